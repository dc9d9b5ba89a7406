package main

// Reaching the remote host as pulumi-command v1.2.1 does (provider/pkg/provider/remote/connection.go),
// with one addition of ours: the host must be a test address (allowedNetworks), checked before anything
// is sent and again on the socket actually dialed.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/retry"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// allowedNetworks: loopback and the end-to-end run's test network, the only places this machine's
// tests may send traffic (DEVELOPERS.md, network rule).
var allowedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("198.18.0.0/15")}

// checkAllowedHost refuses, before any packet, a host that is not a literal address in allowedNetworks
// (a name is refused too: resolving it would already send a query).
func checkAllowedHost(host string) error {
	addr, err := netip.ParseAddr(host)
	if err == nil {
		addr = addr.Unmap()
		for _, network := range allowedNetworks {
			if network.Contains(addr) {
				return nil
			}
		}
	}
	return fmt.Errorf("haproxy-lab's command stand-in refuses to connect to %q: it runs remote commands only "+
		"on test machines, at a literal address in 127.0.0.0/8 or 198.18.0.0/15 "+
		"(set connection.host to such an address, e.g. through the end-to-end run's stack file)", host)
}

// allowedSocket is a net.Dialer Control hook: the address the kernel is about to connect to must be
// allowed too.
func allowedSocket(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	return checkAllowedHost(host)
}

// sshConfig is upstream's connectionBase.SSHConfig: the host key is checked only when hostKey is set
// (else ssh.InsecureIgnoreHostKey, as upstream); auth by private key (with its passphrase), then
// password and keyboard-interactive, then the agent (agentSocketPath, else SSH_AUTH_SOCK), whose
// socket must answer when set.
func sshConfig(c *connection) (*ssh.ClientConfig, error) {
	config := &ssh.ClientConfig{
		User:            *c.User,
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), //nolint:gosec // upstream's behaviour without hostKey
		Timeout:         time.Second * time.Duration(*c.PerDialTimeout),
	}
	if c.HostKey != nil {
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(*c.HostKey))
		if err != nil {
			return nil, fmt.Errorf("failed to parse host key: %w", err)
		}
		config.HostKeyCallback = ssh.FixedHostKey(key)
		config.HostKeyAlgorithms = []string{key.Type()}
	}
	if c.PrivateKey != nil {
		var signer ssh.Signer
		var err error
		if c.PrivateKeyPassword != nil {
			signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(*c.PrivateKey), []byte(*c.PrivateKeyPassword))
		} else {
			signer, err = ssh.ParsePrivateKey([]byte(*c.PrivateKey))
		}
		if err != nil {
			return nil, err
		}
		config.Auth = append(config.Auth, ssh.PublicKeys(signer))
	}
	if c.Password != nil {
		password := *c.Password
		config.Auth = append(config.Auth, ssh.Password(password),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = password
				}
				return answers, nil
			}))
	}
	socket := os.Getenv("SSH_AUTH_SOCK")
	if c.AgentSocketPath != nil {
		socket = *c.AgentSocketPath
	}
	if socket != "" {
		conn, err := net.Dial("unix", socket)
		if err != nil {
			return nil, err
		}
		config.Auth = append(config.Auth, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
	}
	return config, nil
}

// dial is upstream's Connection.Dial without a proxy: ssh.Dial (a TCP dial bounded by perDialTimeout,
// then an SSH handshake that nothing bounds) retried by the Pulumi SDK's retry.Until with its default
// back-off (100 ms, x1.5, at most 5 s) until it succeeds, dialErrorLimit is passed (-1: never), or ctx
// ends (the step's custom timeout; the answer is then ctx's error). Each failed dial is reported as a
// status line "Dial n/limit failed: retrying" (upstream's dialWithRetry).
func dial(ctx context.Context, c *connection, status func(string)) (*ssh.Client, error) {
	if err := checkAllowedHost(*c.Host); err != nil {
		return nil, err
	}
	if c.Proxy != nil {
		return nil, fmt.Errorf("connection.proxy: haproxy-lab's command stand-in does not dial through a " +
			"bastion host (the program never sets one)")
	}
	config, err := sshConfig(c)
	if err != nil {
		return nil, err
	}
	endpoint := net.JoinHostPort(*c.Host, strconv.Itoa(int(*c.Port)))
	limit := *c.DialErrorLimit
	var client *ssh.Client
	var lastErr error
	ok, _, err := retry.Until(ctx, retry.Acceptor{
		Accept: func(try int, _ time.Duration) (bool, any, error) {
			client, lastErr = sshDial(endpoint, config)
			if lastErr == nil {
				return true, nil, nil
			}
			dials := try + 1
			if limit > -1 && dials > limit {
				return true, nil, fmt.Errorf("after %d failed attempts: %w", try, lastErr)
			}
			shown := "inf"
			if limit != -1 {
				shown = strconv.Itoa(limit)
			}
			status(fmt.Sprintf("Dial %d/%s failed: retrying", dials, shown))
			return false, nil, nil
		},
	})
	if ok && err == nil {
		return client, nil
	}
	if err == nil {
		err = ctx.Err()
	}
	return nil, err
}

// sshDial is ssh.Dial (x/crypto/ssh/client.go) with the allow-list checked on the socket.
func sshDial(endpoint string, config *ssh.ClientConfig) (*ssh.Client, error) {
	conn, err := (&net.Dialer{Timeout: config.Timeout, Control: allowedSocket}).Dial("tcp", endpoint)
	if err != nil {
		return nil, err
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, endpoint, config)
	if err != nil {
		return nil, err
	}
	return ssh.NewClient(c, chans, reqs), nil
}
