// Command pulumi-resource-proxmoxve is haproxy-lab's rebuild of the Proxmox VE provider plugin, made
// only because the Go module proxy refuses github.com/muhlba91/pulumi-proxmoxve/provider (see README,
// "The real engine"). It is the same kind of binary as the upstream plugin: bpg's Terraform provider
// (its SDKv2 and plugin-framework halves, muxed) served through pulumi-terraform-bridge, so Check,
// Diff and Create run bpg's own schema, validators and plan logic. What is ours: the token map below,
// limited to the resources haproxy-lab declares, named as the pulumi-proxmoxve Python SDK names them.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/bpg/terraform-provider-proxmox/fwprovider"
	tfprovider "github.com/bpg/terraform-provider-proxmox/proxmoxtf/provider"
	pfbridge "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	shimv2 "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim/sdk-v2"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/x/muxer"
	"github.com/pulumi/pulumi-terraform-bridge/v3/unstable/metadata"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
)

// Version is set at link time (-ldflags -X main.Version=...): the pulumi-proxmoxve SDK version it serves.
var Version = "0.0.0-dev"

// resources maps the Terraform resources haproxy-lab uses to the pulumi-proxmoxve SDK's type tokens.
var resources = map[string]string{
	"proxmox_virtual_environment_vm":               "proxmoxve:index/vmLegacy:VmLegacy",
	"proxmox_virtual_environment_file":             "proxmoxve:index/fileLegacy:FileLegacy",
	"proxmox_download_file":                        "proxmoxve:download/file:File",
	"proxmox_virtual_environment_firewall_rules":   "proxmoxve:firewall/rulesLegacy:RulesLegacy",
	"proxmox_virtual_environment_firewall_options": "proxmoxve:firewall/optionsLegacy:OptionsLegacy",
}

type dispatcher interface {
	ResolveDispatch(info *tfbridge.ProviderInfo) (muxer.DispatchTable, error)
}

func main() {
	ctx := context.Background()
	p := pfbridge.MuxShimWithPF(ctx, shimv2.NewProvider(tfprovider.ProxmoxVirtualEnvironment()), fwprovider.New(Version)())
	info := tfbridge.ProviderInfo{
		P:              p,
		Name:           "proxmoxve",
		ResourcePrefix: "proxmox",
		Version:        Version,
		Resources:      map[string]*tfbridge.ResourceInfo{},
		MetadataInfo:   tfbridge.NewProviderMetadata([]byte("{}")),
	}
	for tf, tok := range resources {
		info.Resources[tf] = &tfbridge.ResourceInfo{Tok: tokens.Type(tok)}
	}
	// The upstream build computes the mux dispatch table at tfgen time; we compute it at start.
	table, err := p.(dispatcher).ResolveDispatch(&info)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-proxmoxve: %v\n", err)
		os.Exit(1)
	}
	if err := metadata.Set(info.GetMetadata(), "mux", table); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-proxmoxve: %v\n", err)
		os.Exit(1)
	}
	schema := fmt.Sprintf(`{"name":"proxmoxve","version":%q}`, Version)
	pfbridge.MainWithMuxer(ctx, "proxmoxve", info, []byte(schema))
}
