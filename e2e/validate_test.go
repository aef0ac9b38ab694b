package e2e

// Tests 4 of the host issue: envoy.yaml and the EnvoyFilter's embedded HTTP
// filter are parsed with Envoy's own API definitions (go-control-plane) and
// validated with the protoc-gen-validate rules Envoy itself enforces. These
// tests need neither Envoy nor security.wasm and always run.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"sigs.k8s.io/yaml"
)

// The imports above register every type the two files name in an "@type"
// (HTTP connection manager, wasm filter, router, StringValue), so protojson
// can resolve the Any fields; an unregistered type is an error, as in Envoy.

const (
	envoyYAML       = "../envoy.yaml"
	envoyFilterYAML = "../deploy/istio/envoyfilter.yaml"

	wasmFilterName   = "envoy.filters.http.wasm"
	routerFilterName = "envoy.filters.http.router"
	hcmFilterName    = "envoy.filters.network.http_connection_manager"
	v8Runtime        = "envoy.wasm.runtime.v8"
)

// readYAMLAsJSONValue reads a one-document YAML file into a generic JSON value
// (numbers kept as json.Number), the form the mutation tests edit.
func readYAMLAsJSONValue(t *testing.T, path string) any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatalf("%s: YAML: %v", path, err)
	}
	return decodeJSONValue(t, js)
}

func decodeJSONValue(t *testing.T, js []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode JSON: %v", err)
	}
	return v
}

// parseProto unmarshals a generic JSON value into msg the way Envoy reads
// YAML: unknown fields and unresolvable "@type"s are errors. It then
// validates msg and every message packed in an Any inside it.
func parseProto(v any, msg proto.Message) error {
	js, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, msg); err != nil {
		return err
	}
	return validateTree(msg.ProtoReflect(), "")
}

// validateTree runs the generated ValidateAll of m, and of every message
// packed in an Any anywhere below m. The generated validators check nested
// messages themselves but stop at an Any (they never unpack one), so without
// this walk nothing inside a typed_config would be validated. Errors name the
// path of the Any they come from.
func validateTree(m protoreflect.Message, at string) error {
	var errs []string
	if v, ok := m.Interface().(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", orRoot(at), err))
		}
	}
	var walk func(m protoreflect.Message, at string)
	visit := func(v protoreflect.Message, at string) {
		if a, ok := v.Interface().(*anypb.Any); ok {
			inner, err := a.UnmarshalNew()
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", at, err))
				return
			}
			if err := validateTree(inner.ProtoReflect(), at+"("+a.GetTypeUrl()+")"); err != nil {
				errs = append(errs, err.Error())
			}
			return
		}
		walk(v, at)
	}
	walk = func(m protoreflect.Message, at string) {
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			name := at + "." + string(fd.Name())
			switch {
			case fd.IsMap():
				if fd.MapValue().Message() != nil {
					v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
						visit(mv.Message(), fmt.Sprintf("%s[%v]", name, k.Interface()))
						return true
					})
				}
			case fd.IsList():
				if fd.Message() != nil {
					for i := 0; i < v.List().Len(); i++ {
						visit(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", name, i))
					}
				}
			case fd.Message() != nil:
				visit(v.Message(), name)
			}
			return true
		})
	}
	walk(m, at)
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func orRoot(at string) string {
	if at == "" {
		return "(root)"
	}
	return at
}

// unpack unmarshals an Any into a fresh message of type T.
func unpack[T proto.Message](t *testing.T, what string, a *anypb.Any, into T) T {
	t.Helper()
	if a == nil {
		t.Fatalf("%s: typed_config missing", what)
	}
	if err := a.UnmarshalTo(into); err != nil {
		t.Fatalf("%s: typed_config %s: %v", what, a.GetTypeUrl(), err)
	}
	return into
}

// checkWasmFilter asserts the wasm filter's settings shared by envoy.yaml and
// the EnvoyFilter; only the module's file name differs.
func checkWasmFilter(t *testing.T, f *hcmv3.HttpFilter, wantFilename string) {
	t.Helper()
	w := unpack(t, f.GetName(), f.GetTypedConfig(), &wasmfilterv3.Wasm{})
	c := w.GetConfig()
	if got, want := c.GetRootId(), "wasmguard"; got != want {
		t.Errorf("wasm config.root_id = %q, want %q", got, want)
	}
	if got, want := c.GetFailurePolicy(), wasmv3.FailurePolicy_FAIL_CLOSED; got != want {
		t.Errorf("wasm config.failure_policy = %v, want %v", got, want)
	}
	if c.GetFailOpen() {
		t.Errorf("wasm config.fail_open = true, want unset (Envoy refuses it together with failure_policy)")
	}
	vm := c.GetVmConfig()
	if got, want := vm.GetVmId(), "wasmguard"; got != want {
		t.Errorf("wasm vm_config.vm_id = %q, want %q (one shared-data store for all worker VMs)", got, want)
	}
	if got := vm.GetRuntime(); got != v8Runtime {
		t.Errorf("wasm vm_config.runtime = %q, want %q", got, v8Runtime)
	}
	if got := vm.GetCode().GetLocal().GetFilename(); got != wantFilename {
		t.Errorf("wasm vm_config.code.local.filename = %q, want %q", got, wantFilename)
	}
	var sv wrapperspb.StringValue
	if err := c.GetConfiguration().UnmarshalTo(&sv); err != nil {
		t.Fatalf("wasm config.configuration: want a google.protobuf.StringValue, got %s: %v", c.GetConfiguration().GetTypeUrl(), err)
	}
	if got := strings.TrimSpace(sv.GetValue()); got != DesignConfiguration {
		t.Errorf("wasm config.configuration is not byte for byte the design configuration:\n got %s\nwant %s", got, DesignConfiguration)
	}
	if !sameJSON(t, sv.GetValue(), DesignConfiguration) {
		t.Errorf("wasm config.configuration = %s, want (as JSON) %s", sv.GetValue(), DesignConfiguration)
	}
}

// sameJSON reports whether a and b hold equal JSON values.
func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal([]byte(a), &va); err != nil {
		t.Errorf("not JSON: %v: %s", err, a)
		return false
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		t.Errorf("not JSON: %v: %s", err, b)
		return false
	}
	return reflect.DeepEqual(va, vb)
}

func TestEnvoyYAMLValidates(t *testing.T) {
	var bs bootstrapv3.Bootstrap
	if err := parseProto(readYAMLAsJSONValue(t, envoyYAML), &bs); err != nil {
		t.Fatalf("%s: %v", envoyYAML, err)
	}

	admin := bs.GetAdmin().GetAddress().GetSocketAddress()
	if admin.GetAddress() != "127.0.0.1" || admin.GetPortValue() != 9901 {
		t.Errorf("admin address = %s:%d, want 127.0.0.1:9901", admin.GetAddress(), admin.GetPortValue())
	}

	ls := bs.GetStaticResources().GetListeners()
	if len(ls) != 1 {
		t.Fatalf("%d listeners, want 1", len(ls))
	}
	la := ls[0].GetAddress().GetSocketAddress()
	if la.GetAddress() != "127.0.0.1" || la.GetPortValue() != 10000 {
		t.Errorf("listener address = %s:%d, want 127.0.0.1:10000", la.GetAddress(), la.GetPortValue())
	}
	fcs := ls[0].GetFilterChains()
	if len(fcs) != 1 || len(fcs[0].GetFilters()) != 1 || fcs[0].GetFilters()[0].GetName() != hcmFilterName {
		t.Fatalf("listener: want one filter chain with the single network filter %s", hcmFilterName)
	}
	hcm := unpack(t, hcmFilterName, fcs[0].GetFilters()[0].GetTypedConfig(), &hcmv3.HttpConnectionManager{})
	if !hcm.GetUseRemoteAddress().GetValue() || hcm.GetXffNumTrustedHops() != 0 {
		t.Errorf("use_remote_address = %v, xff_num_trusted_hops = %d; want true and 0 (the edge listener trusts the TCP peer, not x-forwarded-for)",
			hcm.GetUseRemoteAddress().GetValue(), hcm.GetXffNumTrustedHops())
	}

	hfs := hcm.GetHttpFilters()
	var names []string
	for _, f := range hfs {
		names = append(names, f.GetName())
	}
	if want := []string{wasmFilterName, routerFilterName}; !reflect.DeepEqual(names, want) {
		t.Fatalf("http_filters = %v, want %v", names, want)
	}
	checkWasmFilter(t, hfs[0], "./security.wasm")
	unpack(t, routerFilterName, hfs[1].GetTypedConfig(), &routerv3.Router{})

	vhs := hcm.GetRouteConfig().GetVirtualHosts()
	if len(vhs) != 1 || len(vhs[0].GetRoutes()) != 1 {
		t.Fatalf("route_config: want one virtual host with one route")
	}
	if got := vhs[0].GetRoutes()[0].GetRoute().GetCluster(); got != "upstream" {
		t.Errorf("route cluster = %q, want %q", got, "upstream")
	}
	cs := bs.GetStaticResources().GetClusters()
	if len(cs) != 1 || cs[0].GetName() != "upstream" || cs[0].GetType() != clusterv3.Cluster_STATIC {
		t.Fatalf("clusters: want one STATIC cluster named upstream")
	}
	eps := cs[0].GetLoadAssignment().GetEndpoints()
	if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
		t.Fatalf("cluster upstream: want exactly one endpoint")
	}
	up := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if up.GetAddress() != "127.0.0.1" || up.GetPortValue() != 8080 {
		t.Errorf("upstream endpoint = %s:%d, want 127.0.0.1:8080", up.GetAddress(), up.GetPortValue())
	}
}

// Paths into envoy.yaml used by the negative cases.
const (
	hcmPath  = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
	wasmPath = hcmPath + ".http_filters[0].typed_config"
)

// badEdit is one change that must make a configuration invalid, and a piece
// of the error it must cause.
type badEdit struct {
	name    string
	path    string // where to change, e.g. "a.b[0].c"
	value   any    // the new value; deleteKey removes the key
	wantErr string
}

var deleteKey = &struct{}{}

func TestEnvoyYAMLRejectsBadEdits(t *testing.T) {
	cases := []badEdit{
		{"unknown field in vm_config", wasmPath + ".config.vm_config.runtimee", v8Runtime, `unknown field "runtimee"`},
		{"unknown field at top level", "static_resourcez", map[string]any{}, `unknown field "static_resourcez"`},
		{"unknown failure_policy", wasmPath + ".config.failure_policy", "FAIL_SOMETIMES", "FAIL_SOMETIMES"},
		{"unresolvable typed_config type", wasmPath + ".@type", "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasmm", "Wasmm"},
		{"configuration not a string", wasmPath + ".config.configuration.value", 42, "invalid value for string field value"},
		{"listener port out of range", "static_resources.listeners[0].address.socket_address.port_value", 70000, "PortValue"},
		{"empty stat_prefix inside the HCM Any", hcmPath + ".stat_prefix", "", "StatPrefix"},
		{"empty HTTP filter name", hcmPath + ".http_filters[0].name", "", "Name"},
		{"empty wasm filename three Anys deep", wasmPath + ".config.vm_config.code.local.filename", "", "Filename"},
		{"negative connect_timeout", "static_resources.clusters[0].connect_timeout", "-1s", "ConnectTimeout"},
		{"empty route cluster", hcmPath + ".route_config.virtual_hosts[0].routes[0].route.cluster", "", "Cluster"},
		{"virtual host without domains", hcmPath + ".route_config.virtual_hosts[0].domains", deleteKey, "Domains"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := readYAMLAsJSONValue(t, envoyYAML)
			if err := edit(doc, c.path, c.value); err != nil {
				t.Fatalf("edit %s: %v", c.path, err)
			}
			err := parseProto(doc, &bootstrapv3.Bootstrap{})
			if err == nil {
				t.Fatalf("envoy.yaml with %s = %v was accepted", c.path, c.value)
			}
			if !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %q does not mention %q", err, c.wantErr)
			}
			t.Logf("rejected: %v", err)
		})
	}
}

// envoyFilter is the part of Istio's EnvoyFilter resource this repository
// uses. Decoding is strict, so a misspelt key fails the test; a field of the
// real resource that is not listed here must be added deliberately.
type envoyFilter struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Spec struct {
		WorkloadSelector *struct {
			Labels map[string]string `json:"labels"`
		} `json:"workloadSelector,omitempty"`
		Priority      int `json:"priority,omitempty"`
		ConfigPatches []struct {
			ApplyTo string `json:"applyTo"`
			Match   struct {
				Context  string `json:"context"`
				Listener struct {
					FilterChain struct {
						Filter struct {
							Name      string `json:"name"`
							SubFilter struct {
								Name string `json:"name"`
							} `json:"subFilter"`
						} `json:"filter"`
					} `json:"filterChain"`
				} `json:"listener"`
			} `json:"match"`
			Patch struct {
				Operation string          `json:"operation"`
				Value     json.RawMessage `json:"value"`
			} `json:"patch"`
		} `json:"configPatches"`
	} `json:"spec"`
}

// parseEnvoyFilter decodes the resource strictly, checks the fields Istio
// would reject or that the design fixes, and returns the embedded HTTP filter
// parsed and validated with Envoy's API.
func parseEnvoyFilter(doc any) (*hcmv3.HttpFilter, error) {
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var ef envoyFilter
	if err := dec.Decode(&ef); err != nil {
		return nil, err
	}
	checks := []struct{ field, got, want string }{
		{"apiVersion", ef.APIVersion, "networking.istio.io/v1alpha3"},
		{"kind", ef.Kind, "EnvoyFilter"},
		{"metadata.name", ef.Metadata.Name, "custom-security-filter"},
		{"metadata.namespace", ef.Metadata.Namespace, "production"},
	}
	for _, c := range checks {
		if c.got != c.want {
			return nil, fmt.Errorf("%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	if n := len(ef.Spec.ConfigPatches); n != 1 {
		return nil, fmt.Errorf("spec.configPatches: %d patches, want 1", n)
	}
	p := ef.Spec.ConfigPatches[0]
	checks = []struct{ field, got, want string }{
		{"applyTo", p.ApplyTo, "HTTP_FILTER"},
		{"match.context", p.Match.Context, "SIDECAR_INBOUND"},
		{"match.listener.filterChain.filter.name", p.Match.Listener.FilterChain.Filter.Name, hcmFilterName},
		{"match.listener.filterChain.filter.subFilter.name", p.Match.Listener.FilterChain.Filter.SubFilter.Name, routerFilterName},
		{"patch.operation", p.Patch.Operation, "INSERT_BEFORE"},
	}
	for _, c := range checks {
		if c.got != c.want {
			return nil, fmt.Errorf("spec.configPatches[0].%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	var hf hcmv3.HttpFilter
	var v any
	if err := json.Unmarshal(p.Patch.Value, &v); err != nil {
		return nil, fmt.Errorf("spec.configPatches[0].patch.value: %w", err)
	}
	if err := parseProto(v, &hf); err != nil {
		return nil, fmt.Errorf("spec.configPatches[0].patch.value: %w", err)
	}
	return &hf, nil
}

func TestEnvoyFilterValidates(t *testing.T) {
	hf, err := parseEnvoyFilter(readYAMLAsJSONValue(t, envoyFilterYAML))
	if err != nil {
		t.Fatalf("%s: %v", envoyFilterYAML, err)
	}
	if hf.GetName() != wasmFilterName {
		t.Errorf("patch.value.name = %q, want %q", hf.GetName(), wasmFilterName)
	}
	checkWasmFilter(t, hf, "/etc/custom-filters/security.wasm")
}

func TestEnvoyFilterRejectsBadEdits(t *testing.T) {
	const value = "spec.configPatches[0].patch.value"
	cases := []badEdit{
		{"misspelt Istio key", "spec.configPatchez", []any{}, `unknown field "configPatchez"`},
		{"wrong context", "spec.configPatches[0].match.context", "SIDECAR_OUTBOUND", "match.context"},
		{"wrong operation", "spec.configPatches[0].patch.operation", "INSERT_AFTER", "patch.operation"},
		{"wrong namespace", "metadata.namespace", "default", "metadata.namespace"},
		{"unknown field in the wasm config", value + ".typed_config.config.vm_config.runtimee", v8Runtime, `unknown field "runtimee"`},
		{"unresolvable typed_config type", value + ".typed_config.@type", "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasmm", "Wasmm"},
		{"empty wasm filename", value + ".typed_config.config.vm_config.code.local.filename", "", "Filename"},
		{"empty filter name", value + ".name", "", "Name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := readYAMLAsJSONValue(t, envoyFilterYAML)
			if err := edit(doc, c.path, c.value); err != nil {
				t.Fatalf("edit %s: %v", c.path, err)
			}
			_, err := parseEnvoyFilter(doc)
			if err == nil {
				t.Fatalf("envoyfilter.yaml with %s = %v was accepted", c.path, c.value)
			}
			if !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %q does not mention %q", err, c.wantErr)
			}
			t.Logf("rejected: %v", err)
		})
	}
}

// edit sets (or, with deleteKey, removes) the value at path in a generic JSON
// document. A path is dot-separated keys, each optionally followed by list
// indexes: "a.b[0].c". Every key but the last must exist.
func edit(doc any, path string, value any) error {
	parts := strings.Split(path, ".")
	cur := doc
	for i, part := range parts {
		key, idxs, err := splitIndexes(part)
		if err != nil {
			return err
		}
		m, ok := cur.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: not an object", strings.Join(parts[:i], "."))
		}
		last := i == len(parts)-1
		if last && len(idxs) == 0 {
			if value == deleteKey {
				if _, ok := m[key]; !ok {
					return fmt.Errorf("%s: no such key", path)
				}
				delete(m, key)
			} else {
				m[key] = value
			}
			return nil
		}
		next, ok := m[key]
		if !ok {
			return fmt.Errorf("%s: no key %q", strings.Join(parts[:i], "."), key)
		}
		for j, idx := range idxs {
			l, ok := next.([]any)
			if !ok || idx >= len(l) {
				return fmt.Errorf("%s: no element %d", part, idx)
			}
			if last && j == len(idxs)-1 {
				if value == deleteKey {
					return fmt.Errorf("%s: deleting list elements is not supported", path)
				}
				l[idx] = value
				return nil
			}
			next = l[idx]
		}
		cur = next
	}
	return nil
}

// splitIndexes splits "key[1][2]" into "key" and [1 2].
func splitIndexes(part string) (string, []int, error) {
	key, rest, found := strings.Cut(part, "[")
	if !found {
		return part, nil, nil
	}
	var idxs []int
	for _, s := range strings.Split(strings.TrimSuffix(rest, "]"), "][") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return "", nil, fmt.Errorf("%q: bad index %q", part, s)
		}
		idxs = append(idxs, n)
	}
	return key, idxs, nil
}

func TestEditHelper(t *testing.T) {
	doc := decodeJSONValue(t, []byte(`{"a":{"b":[{"c":1},{"c":2}]},"d":3}`))
	if err := edit(doc, "a.b[1].c", "x"); err != nil {
		t.Fatal(err)
	}
	if err := edit(doc, "d", deleteKey); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(doc)
	if want := `{"a":{"b":[{"c":1},{"c":"x"}]}}`; string(got) != want {
		t.Fatalf("after edits: %s, want %s", got, want)
	}
	for _, bad := range []string{"a.x.c", "a.b[5].c", "d.e", "a.b[x]"} {
		if err := edit(doc, bad, 1); err == nil {
			t.Errorf("edit(%q) succeeded, want an error", bad)
		}
	}
}
