package wasmhost

import "strings"

// wasmBuilder hand-assembles small WebAssembly modules for tests that need
// exact imports, exports or misbehaviour a Go plugin cannot produce on
// demand. Signatures use the package's "params:results" notation.
type wasmBuilder struct {
	types   []string
	imports []wasmImport
	funcs   []wasmFunc
	pages   int
	noMem   bool
}

type wasmImport struct{ mod, name, sig string }

type wasmFunc struct {
	export, sig string
	body        []byte
}

func newWasm() *wasmBuilder { return &wasmBuilder{pages: 2} }

func (b *wasmBuilder) typeIndex(sig string) int {
	for i, t := range b.types {
		if t == sig {
			return i
		}
	}
	b.types = append(b.types, sig)
	return len(b.types) - 1
}

// imp adds an import and returns its function index. Add every import
// before the functions that call it.
func (b *wasmBuilder) imp(mod, name, sig string) int {
	b.imports = append(b.imports, wasmImport{mod, name, sig})
	return len(b.imports) - 1
}

// fn adds an exported function.
func (b *wasmBuilder) fn(export, sig string, code ...[]byte) *wasmBuilder {
	var body []byte
	for _, c := range code {
		body = append(body, c...)
	}
	b.funcs = append(b.funcs, wasmFunc{export, sig, body})
	return b
}

func uleb(v uint64) []byte {
	var out []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			c |= 0x80
		}
		out = append(out, c)
		if v == 0 {
			return out
		}
	}
}

func sleb(v int64) []byte {
	var out []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		done := (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0)
		if !done {
			c |= 0x80
		}
		out = append(out, c)
		if done {
			return out
		}
	}
}

// Instructions.
func call(i int) []byte       { return append([]byte{0x10}, uleb(uint64(i))...) }
func i32c(v int32) []byte     { return append([]byte{0x41}, sleb(int64(v))...) }
func i64c(v int64) []byte     { return append([]byte{0x42}, sleb(v)...) }
func localGet(i int) []byte   { return append([]byte{0x20}, uleb(uint64(i))...) }
func i32store(off int) []byte { return append([]byte{0x36, 0x02}, uleb(uint64(off))...) }

func i32load(off int) []byte { return append([]byte{0x28, 0x02}, uleb(uint64(off))...) }

var (
	opDrop        = []byte{0x1a}
	opUnreachable = []byte{0x00}
	opI32Add      = []byte{0x6a}
	opIf          = []byte{0x04, 0x40} // if with no result
	opEnd         = []byte{0x0b}
)

func vec(items [][]byte) []byte {
	out := uleb(uint64(len(items)))
	for _, it := range items {
		out = append(out, it...)
	}
	return out
}

func name(s string) []byte { return append(uleb(uint64(len(s))), s...) }

func valTypes(s string) []byte {
	out := uleb(uint64(len(s)))
	for _, c := range s {
		if c == 'I' {
			out = append(out, 0x7e)
		} else {
			out = append(out, 0x7f)
		}
	}
	return out
}

func section(id byte, content []byte) []byte {
	return append(append([]byte{id}, uleb(uint64(len(content)))...), content...)
}

func (b *wasmBuilder) bytes() []byte {
	for _, im := range b.imports {
		b.typeIndex(im.sig)
	}
	for _, f := range b.funcs {
		b.typeIndex(f.sig)
	}
	out := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	var types [][]byte
	for _, t := range b.types {
		p, r, _ := strings.Cut(t, ":")
		types = append(types, append(append([]byte{0x60}, valTypes(p)...), valTypes(r)...))
	}
	out = append(out, section(1, vec(types))...)
	var imps [][]byte
	for _, im := range b.imports {
		e := append(name(im.mod), name(im.name)...)
		e = append(e, 0x00)
		e = append(e, uleb(uint64(b.typeIndex(im.sig)))...)
		imps = append(imps, e)
	}
	out = append(out, section(2, vec(imps))...)
	var fidx [][]byte
	for _, f := range b.funcs {
		fidx = append(fidx, uleb(uint64(b.typeIndex(f.sig))))
	}
	out = append(out, section(3, vec(fidx))...)
	if !b.noMem {
		out = append(out, section(5, vec([][]byte{append([]byte{0x00}, uleb(uint64(b.pages))...)}))...)
	}
	var exps [][]byte
	if !b.noMem {
		exps = append(exps, append(name("memory"), 0x02, 0x00))
	}
	for i, f := range b.funcs {
		exps = append(exps, append(append(name(f.export), 0x00), uleb(uint64(len(b.imports)+i))...))
	}
	out = append(out, section(7, vec(exps))...)
	var codes [][]byte
	for _, f := range b.funcs {
		fn := append([]byte{0x00}, f.body...) // no locals
		fn = append(fn, 0x0b)
		codes = append(codes, append(uleb(uint64(len(fn))), fn...))
	}
	out = append(out, section(10, vec(codes))...)
	return out
}

// mallocAddr is where the tiny module's allocator always answers.
const mallocAddr = 4096

// tinyProxy is a minimal Proxy-Wasm 0.2.0 module: a fixed-address
// allocator and the start callbacks. Options change pieces of it.
type tinyProxy struct {
	b          *wasmBuilder
	abi        string   // export name of the ABI version
	initCode   [][]byte // body of _initialize
	allocPre   [][]byte // code run by proxy_on_memory_allocate first
	vmStart    [][]byte // code run by proxy_on_vm_start before returning 1
	configure  int32    // proxy_on_configure's result
	reqHeaders [][]byte // proxy_on_request_headers' body, which must leave an i32 action
}

func newTiny() *tinyProxy {
	return &tinyProxy{b: newWasm(), abi: "proxy_abi_version_0_2_0", configure: 1}
}

func (t *tinyProxy) bytes() []byte {
	b := t.b
	b.fn(t.abi, ":")
	if t.initCode != nil {
		b.fn("_initialize", ":", t.initCode...)
	}
	b.fn("proxy_on_memory_allocate", "i:i", append(append([][]byte{}, t.allocPre...), i32c(mallocAddr))...)
	b.fn("proxy_on_context_create", "ii")
	b.fn("proxy_on_vm_start", "ii:i", append(append([][]byte{}, t.vmStart...), i32c(1))...)
	b.fn("proxy_on_configure", "ii:i", i32c(t.configure))
	if t.reqHeaders != nil {
		b.fn("proxy_on_request_headers", "iii:i", t.reqHeaders...)
	}
	return b.bytes()
}
