package main

// A remote.Command's properties as the engine sends them (a structpb.Struct in which secrets are
// {sig: secret, value: ...} objects and unknowns a marker string) and as this stand-in reads them.

import (
	"encoding/json"
	"fmt"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// commandInputs holds what a run needs, secrets unwrapped (pulumi-command's CommandInputs,
// provider/pkg/provider/remote/command.go, with ResourceInputs from common/inputs.go).
type commandInputs struct {
	Connection             *connection       `json:"connection"`
	Create                 *string           `json:"create"`
	Update                 *string           `json:"update"`
	Delete                 *string           `json:"delete"`
	Environment            map[string]string `json:"environment"`
	Stdin                  *string           `json:"stdin"`
	Logging                *string           `json:"logging"`
	AddPreviousOutputInEnv *bool             `json:"addPreviousOutputInEnv"`
	// The previous run's outputs, present in a resource's state (Update's olds, Delete's properties).
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
}

// connection is upstream's Connection (remote/connection.go, connectionBase + Proxy).
type connection struct {
	User               *string          `json:"user"`
	Password           *string          `json:"password"`
	Host               *string          `json:"host"`
	Port               *float64         `json:"port"`
	PrivateKey         *string          `json:"privateKey"`
	PrivateKeyPassword *string          `json:"privateKeyPassword"`
	AgentSocketPath    *string          `json:"agentSocketPath"`
	DialErrorLimit     *int             `json:"dialErrorLimit"`
	PerDialTimeout     *int             `json:"perDialTimeout"`
	HostKey            *string          `json:"hostKey"`
	Proxy              *json.RawMessage `json:"proxy"`
}

// connectionDefaults are the SetDefault values of upstream's Connection and ProxyConnection Annotate
// (remote/connection.go, remote/proxyConnection.go), applied in Check as infer's DefaultCheck does.
var connectionDefaults = map[string]*structpb.Value{
	"user":           structpb.NewStringValue("root"),
	"port":           structpb.NewNumberValue(22),
	"dialErrorLimit": structpb.NewNumberValue(10),
	"perDialTimeout": structpb.NewNumberValue(15),
}

// decodeInputs reads a property struct (inputs or state) with its secrets unwrapped and the
// connection's defaults applied (a state written before Check applied them has none).
func decodeInputs(props *structpb.Struct) (*commandInputs, error) {
	plain := unwrapSecrets(structpb.NewStructValue(props))
	if conn := plain.GetStructValue().GetFields()["connection"].GetStructValue(); conn != nil {
		withDefaults(conn)
	}
	text, err := json.Marshal(plain.AsInterface())
	if err != nil {
		return nil, err
	}
	var in commandInputs
	if err := json.Unmarshal(text, &in); err != nil {
		return nil, fmt.Errorf("invalid remote.Command properties: %w", err)
	}
	if in.Connection == nil || in.Connection.Host == nil {
		return nil, fmt.Errorf("invalid remote.Command properties: connection.host is required")
	}
	return &in, nil
}

// checkInputs is upstream's Check: defaults applied to the connection (and its proxy), and the
// connection made secret (it is tagged provider:"secret"; infer's applySecrets wraps it).
func checkInputs(news *structpb.Struct) *structpb.Struct {
	out := proto.Clone(news).(*structpb.Struct)
	if out.GetFields() == nil {
		return out
	}
	conn, ok := out.GetFields()["connection"]
	if !ok {
		return out
	}
	inner, wasSecret := secretElement(conn)
	if obj := inner.GetStructValue(); obj != nil {
		withDefaults(obj)
		if proxy := obj.GetFields()["proxy"]; proxy.GetStructValue() != nil && !isSecret(proxy) {
			withDefaults(proxy.GetStructValue())
		}
	}
	if !wasSecret && !isUnknown(inner) {
		out.Fields["connection"] = secret(inner)
	}
	return out
}

func withDefaults(obj *structpb.Struct) {
	for key, value := range connectionDefaults {
		if _, set := obj.GetFields()[key]; !set {
			obj.Fields[key] = value
		}
	}
}

// withOutputs is a state: the given properties plus the run's stdout and stderr.
func withOutputs(props *structpb.Struct, stdout, stderr *structpb.Value) *structpb.Struct {
	out := proto.Clone(props).(*structpb.Struct)
	if out.Fields == nil {
		out.Fields = map[string]*structpb.Value{}
	}
	out.Fields["stdout"] = stdout
	out.Fields["stderr"] = stderr
	return out
}

func unknown() *structpb.Value { return structpb.NewStringValue(plugin.UnknownStringValue) }

func isUnknown(v *structpb.Value) bool { return v.GetStringValue() == plugin.UnknownStringValue }

func isSecret(v *structpb.Value) bool {
	return v.GetStructValue().GetFields()[resource.SigKey].GetStringValue() == resource.SecretSig
}

func secret(v *structpb.Value) *structpb.Value {
	return structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
		resource.SigKey: structpb.NewStringValue(resource.SecretSig),
		"value":         v,
	}})
}

// secretElement returns the value inside a secret (and true), or the value itself.
func secretElement(v *structpb.Value) (*structpb.Value, bool) {
	if !isSecret(v) {
		return v, false
	}
	return v.GetStructValue().GetFields()["value"], true
}

// unwrapSecrets is a deep copy of v with every secret replaced by its plain value.
func unwrapSecrets(v *structpb.Value) *structpb.Value {
	v, _ = secretElement(v)
	switch kind := v.GetKind().(type) {
	case *structpb.Value_StructValue:
		out := &structpb.Struct{Fields: map[string]*structpb.Value{}}
		for key, field := range kind.StructValue.GetFields() {
			out.Fields[key] = unwrapSecrets(field)
		}
		return structpb.NewStructValue(out)
	case *structpb.Value_ListValue:
		out := &structpb.ListValue{}
		for _, item := range kind.ListValue.GetValues() {
			out.Values = append(out.Values, unwrapSecrets(item))
		}
		return structpb.NewListValue(out)
	default:
		return v
	}
}

// anyInputChanged: does an update's preview know the outputs? Upstream (infer's markComputed,
// default flow "every output depends on every input") marks stdout/stderr unknown when any input
// is unknown or differs from the same key of the old state.
func anyInputChanged(oldState, news *structpb.Struct) bool {
	for key, value := range news.GetFields() {
		if isUnknown(value) {
			return true
		}
		if old, ok := oldState.GetFields()[key]; ok && !proto.Equal(unwrapSecrets(old), unwrapSecrets(value)) {
			return true
		}
	}
	return false
}
