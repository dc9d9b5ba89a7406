// Command pulumi-resource-command is haproxy-lab's stand-in for Pulumi's command provider v1.2.1,
// built only because the Go module proxy refuses github.com/pulumi/pulumi-command/provider (see
// docs/engine.md). It serves remote.Command with upstream's semantics (provider/pkg/provider/remote in
// pulumi/pulumi-command at tag v1.2.1: commandController.go, commandOutputs.go, connection.go), read
// from its source and written here anew.
//
// It executes commands only when the environment says so (executeEnv=1, set by the end-to-end run;
// the engine passes its environment to plugins), and even then only on test addresses (connection.go).
// Otherwise it plans only: previews work, and create, update and delete refuse outside a preview.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Version is set at link time (-ldflags -X main.Version=...): the pulumi-command version it stands in for.
var Version = "0.0.0-dev"

// executeEnv turns execution on when it is "1"; unset, empty or "0" means plan-only.
const executeEnv = "HAPROXY_LAB_COMMAND_EXECUTE"

// remoteCommand is the only resource the stand-in runs (the program declares no other).
const remoteCommand = "command:remote:Command"

var errNeverRuns = errors.New("haproxy-lab's command stand-in plans only; it never runs a command " +
	"(" + executeEnv + "=1 lets it run commands on test machines, for the end-to-end run only)")

type standIn struct {
	pulumirpc.UnimplementedResourceProviderServer
	host    *provider.HostClient
	execute bool
	modeErr error
	// Cancelled by the engine's Cancel (as upstream's cancel middleware does for every open request).
	root   context.Context
	cancel context.CancelFunc
}

func main() {
	err := provider.Main("command", func(host *provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		p := &standIn{host: host}
		p.root, p.cancel = context.WithCancel(context.Background())
		switch value := os.Getenv(executeEnv); value {
		case "", "0":
		case "1":
			p.execute = true
		default:
			p.modeErr = fmt.Errorf("%s=%q: set it to 1 to run remote commands on test machines "+
				"(the end-to-end run does), or leave it unset to plan only", executeEnv, value)
		}
		return p, nil
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-command: %v\n", err)
		os.Exit(1)
	}
}

func (p *standIn) Handshake(
	context.Context, *pulumirpc.ProviderHandshakeRequest,
) (*pulumirpc.ProviderHandshakeResponse, error) {
	return &pulumirpc.ProviderHandshakeResponse{AcceptSecrets: true, AcceptResources: true}, nil
}

func (p *standIn) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: Version}, nil
}

func (p *standIn) Attach(context.Context, *pulumirpc.PluginAttach) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (p *standIn) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	p.cancel()
	return &emptypb.Empty{}, nil
}

func (p *standIn) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *standIn) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (p *standIn) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	if p.modeErr != nil {
		return nil, p.modeErr
	}
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true, AcceptResources: true, SupportsPreview: true}, nil
}

func (p *standIn) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: checkInputs(req.GetNews())}, nil
}

// Diff: upstream has no custom Diff (infer's default): `triggers` (replaceOnChanges) replaces, any
// other changed input is an update. The Python SDK also sets replace_on_changes=["triggers[*]"].
func (p *standIn) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	olds := req.GetOldInputs()
	if olds == nil {
		olds = req.GetOlds()
	}
	changed := changedKeys(olds, req.GetNews())
	if len(changed) == 0 {
		return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
	}
	resp := &pulumirpc.DiffResponse{
		Changes:         pulumirpc.DiffResponse_DIFF_SOME,
		Diffs:           changed,
		HasDetailedDiff: true,
		DetailedDiff:    map[string]*pulumirpc.PropertyDiff{},
	}
	for _, key := range changed {
		kind := pulumirpc.PropertyDiff_UPDATE
		if key == "triggers" {
			kind = pulumirpc.PropertyDiff_UPDATE_REPLACE
			resp.Replaces = append(resp.Replaces, key)
		}
		resp.DetailedDiff[key] = &pulumirpc.PropertyDiff{Kind: kind, InputDiff: true}
	}
	return resp, nil
}

// changedKeys lists, sorted, the top-level properties that differ between two input sets.
func changedKeys(olds, news *structpb.Struct) []string {
	keys := map[string]bool{}
	for k, v := range news.GetFields() {
		if !proto.Equal(v, olds.GetFields()[k]) {
			keys[k] = true
		}
	}
	for k := range olds.GetFields() {
		if _, ok := news.GetFields()[k]; !ok {
			keys[k] = true
		}
	}
	out := make([]string, 0, len(keys))
	for k := range keys {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Create (upstream's Command.Create): a new id every time; a preview runs nothing (stdout and stderr
// unknown); without `create` nothing runs and nothing is dialed; otherwise `create` runs. A failed
// run leaves no state.
func (p *standIn) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	id, err := resource.NewUniqueHex(resource.URN(req.GetUrn()).Name(), 8, 0)
	if err != nil {
		return nil, err
	}
	props := req.GetProperties()
	if req.GetPreview() {
		return &pulumirpc.CreateResponse{Id: id, Properties: withOutputs(props, unknown(), unknown())}, nil
	}
	if err := p.canRun(req.GetUrn()); err != nil {
		return nil, err
	}
	in, err := decodeInputs(props)
	if err != nil {
		return nil, err
	}
	out := runOutput{}
	if in.Create != nil {
		// A new resource has no previous output, whatever its inputs say.
		in.Stdout, in.Stderr = "", ""
		if out, err = p.run(ctx, req.GetUrn(), req.GetTimeout(), in, *in.Create); err != nil {
			return nil, err
		}
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: outputs(props, out)}, nil
}

// Update (upstream's Command.Update): runs `update` if set, else `create`, else nothing; the previous
// stdout/stderr come from the old state, everything else from the new inputs.
func (p *standIn) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	olds, news := req.GetOlds(), req.GetNews()
	if req.GetPreview() {
		if anyInputChanged(olds, news) {
			return &pulumirpc.UpdateResponse{Properties: withOutputs(news, unknown(), unknown())}, nil
		}
		return &pulumirpc.UpdateResponse{Properties: previousOutputs(news, olds)}, nil
	}
	if err := p.canRun(req.GetUrn()); err != nil {
		return nil, err
	}
	in, err := decodeInputs(news)
	if err != nil {
		return nil, err
	}
	previous, err := decodeInputs(olds)
	if err != nil {
		return nil, err
	}
	cmd := in.Update
	if cmd == nil {
		cmd = in.Create
	}
	if cmd == nil {
		return &pulumirpc.UpdateResponse{Properties: previousOutputs(news, olds)}, nil
	}
	in.Stdout, in.Stderr = previous.Stdout, previous.Stderr
	out, err := p.run(ctx, req.GetUrn(), req.GetTimeout(), in, *cmd)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: outputs(news, out)}, nil
}

// Delete (upstream's Command.Delete): runs only `delete`, with the state's connection, environment,
// stdin and outputs; without `delete` nothing runs and nothing is dialed.
func (p *standIn) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	if err := p.canRun(req.GetUrn()); err != nil {
		return nil, err
	}
	state, err := decodeInputs(req.GetProperties())
	if err != nil {
		return nil, err
	}
	if state.Delete == nil {
		return &emptypb.Empty{}, nil
	}
	if _, err := p.run(ctx, req.GetUrn(), req.GetTimeout(), state, *state.Delete); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Read: the state as it is (upstream has no custom Read), so a refresh sees no drift.
func (p *standIn) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: req.GetInputs()}, nil
}

// canRun: outside a preview, only in execute mode and only for remote.Command.
func (p *standIn) canRun(urn string) error {
	if !p.execute {
		return errNeverRuns
	}
	if kind := string(resource.URN(urn).Type()); kind != remoteCommand {
		return fmt.Errorf("haproxy-lab's command stand-in runs only %s, not %s", remoteCommand, kind)
	}
	return nil
}

// run runs one command for a resource, under the step's custom timeout (seconds, 0 = none), cancelled
// also by the engine's Cancel; as upstream's cancel middleware, the timeout is whole seconds.
func (p *standIn) run(
	ctx context.Context, urn string, timeout float64, in *commandInputs, cmd string,
) (runOutput, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.root, cancel)()
	if timeout != 0 {
		var end context.CancelFunc
		ctx, end = context.WithTimeout(ctx, time.Second*time.Duration(timeout))
		defer end()
	}
	return run(ctx, in, cmd, logger{
		status: func(ctx context.Context, msg string) {
			_ = p.host.LogStatus(ctx, diag.Info, resource.URN(urn), msg)
		},
		log: func(ctx context.Context, severity diag.Severity, msg string) {
			_ = p.host.Log(ctx, severity, resource.URN(urn), msg)
		},
	})
}

func outputs(props *structpb.Struct, out runOutput) *structpb.Struct {
	return withOutputs(props, structpb.NewStringValue(out.stdout), structpb.NewStringValue(out.stderr))
}

// previousOutputs: the new inputs with the old state's stdout and stderr.
func previousOutputs(news, olds *structpb.Struct) *structpb.Struct {
	return withOutputs(news, stringOr(olds.GetFields()["stdout"]), stringOr(olds.GetFields()["stderr"]))
}

func stringOr(v *structpb.Value) *structpb.Value {
	if v == nil {
		return structpb.NewStringValue("")
	}
	return v
}
