package main

// One run of a command on the remote host, as pulumi-command v1.2.1's CommandOutputs.run does
// (provider/pkg/provider/remote/commandOutputs.go), including where it falls short: the context ends
// dial retries but not a running command.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
)

// Upstream's names for the previous run's outputs (provider/pkg/provider/util/util.go).
const (
	previousStdoutEnv = "PULUMI_COMMAND_STDOUT"
	previousStderrEnv = "PULUMI_COMMAND_STDERR"
)

// logger sends a resource's log lines to the engine: status lines (ephemeral, as upstream's
// InfoStatus) and lasting diagnostics.
type logger struct {
	status func(ctx context.Context, msg string)
	log    func(ctx context.Context, severity diag.Severity, msg string)
}

// runOutput is what a successful run leaves in the state.
type runOutput struct{ stdout, stderr string }

// run dials, opens a session, sets the environment (a refusal fails the run), then the previous run's
// stdout/stderr when addPreviousOutputInEnv is unset or true (a refusal is only a warning), feeds stdin
// when non-empty, streams stdout/stderr to the engine line by line as `logging` asks, and returns both
// with one trailing newline trimmed. A failed command fails with `<err>: running "<cmd>":\n<output>`.
//
// As upstream, session.Run does not watch ctx: a step's custom timeout (ctx's deadline) ends dial
// retries, but a command that has started runs to its end (issue 17).
func run(ctx context.Context, in *commandInputs, cmd string, log logger) (runOutput, error) {
	client, err := dial(ctx, in.Connection, func(msg string) { log.status(ctx, msg) })
	if err != nil {
		return runOutput{}, err
	}
	session, err := client.NewSession()
	if err != nil {
		return runOutput{}, err
	}
	defer session.Close()

	for key, value := range in.Environment {
		if err := session.Setenv(key, value); err != nil {
			return runOutput{}, setenvFailed(ctx, log, diag.Error, key, err)
		}
	}
	if in.AddPreviousOutputInEnv == nil || *in.AddPreviousOutputInEnv {
		for _, previous := range []struct{ key, value string }{
			{previousStdoutEnv, in.Stdout}, {previousStderrEnv, in.Stderr},
		} {
			if previous.value == "" {
				continue
			}
			if err := session.Setenv(previous.key, previous.value); err != nil {
				_ = setenvFailed(ctx, log, diag.Warning, previous.key, err)
			}
		}
	}
	if in.Stdin != nil && *in.Stdin != "" {
		session.Stdin = strings.NewReader(*in.Stdin)
	}

	// Both streams go to their own buffer and to one combined buffer (the failure text); those that
	// `logging` names also go through a pipe to a line reader that logs each line. Like upstream,
	// the reader is a bufio.Scanner with its default 64 KiB line limit.
	var stdout, stderr, combined bytes.Buffer
	pipeReader, pipeWriter := io.Pipe()
	outWriters := []io.Writer{&stdout, &combined}
	errWriters := []io.Writer{&stderr, &combined}
	if in.Logging == nil || *in.Logging == "stdout" || *in.Logging == "stdoutAndStderr" {
		outWriters = append(outWriters, pipeWriter)
	}
	if in.Logging == nil || *in.Logging == "stderr" || *in.Logging == "stdoutAndStderr" {
		errWriters = append(errWriters, pipeWriter)
	}
	session.Stdout = io.MultiWriter(outWriters...)
	session.Stderr = io.MultiWriter(errWriters...)
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		lines := bufio.NewScanner(pipeReader)
		for lines.Scan() {
			log.status(ctx, lines.Text())
		}
	}()

	err = session.Run(cmd)
	pipeWriter.Close()
	<-logged
	if err != nil {
		return runOutput{}, fmt.Errorf("%w: running %q:\n%s", err, cmd, combined.String())
	}
	return runOutput{
		stdout: strings.TrimSuffix(stdout.String(), "\n"),
		stderr: strings.TrimSuffix(stderr.String(), "\n"),
	}, nil
}

// setenvFailed logs upstream's advice at the given severity and returns upstream's error
// (logAndWrapSetenvErr in commandOutputs.go).
func setenvFailed(ctx context.Context, log logger, severity diag.Severity, key string, err error) error {
	log.log(ctx, severity, fmt.Sprintf(`Unable to set '%s'. This only works if your SSH server is configured to accept
	these variables via AcceptEnv. Alternatively, if a Bash-like shell runs the command on the remote host, you could
	prefix the command itself with the variables in the form 'VAR=value command'`, key))
	return fmt.Errorf("could not set environment variable %q: %w", key, err)
}
