#!/usr/bin/env node
// host.mjs: an Envoy-like Proxy-Wasm host in plain JavaScript, run by Node.js,
// whose WebAssembly engine is V8, the engine Envoy uses (envoy.wasm.runtime.v8).
//
// Usage:
//
//	node e2e/v8/host.mjs PATH/TO/security.wasm [--config FILE]
//
// It loads the module, links it against an import object that offers exactly
// what Envoy 1.33 offers a Proxy-Wasm module (the env.proxy_* functions of ABI
// 0.2.x and Envoy's subset of wasi_snapshot_preview1), and then drives it the
// way Envoy does:
//
//	_initialize
//	proxy_on_context_create(root, 0)
//	proxy_on_vm_start(root, len(vm configuration))      (empty, as in envoy.yaml)
//	proxy_on_configure(root, len(plugin configuration)) (the seed configuration)
//	for each request: context create, request headers [, body], done, log, delete
//
// with two requests: `GET /download/evil.exe`, which must get a local response
// with status 403, and `GET /index.html`, which must continue to the upstream.
//
// It prints one JSON object on stdout (see `result` below) and exits
//
//	0 when everything went as expected,
//	1 on any deviation (a trap, a refused plugin, a wrong verdict, ...),
//	2 when the module cannot be loaded at all (bad usage, missing file,
//	  an import Envoy does not provide).
//
// What it reproduces from Envoy / proxy-wasm-cpp-host:
//   - the link step fails, naming the import, if the module imports anything
//     that is not in the tables below;
//   - Envoy's WASI: fd_write to 1/2 becomes a log line, fd_fdstat_get answers
//     EBADF except for fds 1 and 2, poll_oneoff answers ENOSYS (52), there are
//     no preopened directories, no arguments and no environment variables;
//   - restricted callbacks: during _initialize only the calls the Go and C
//     runtimes need to start may be made, and inside proxy_on_memory_allocate
//     only proxy_log, fd_write and clock_time_get; anything else traps, as
//     cpp-host's restricted_callback does;
//   - copyToPointerSize: results are written into memory obtained from the
//     module's proxy_on_memory_allocate; an empty result writes (0, 0);
//   - buffers: the VM and plugin configurations are readable only during
//     proxy_on_vm_start and proxy_on_configure, the request body only during
//     proxy_on_request_body (NotFound otherwise, where Envoy may instead
//     answer with an empty buffer); a read of length 0 writes nothing, as in
//     cpp-host;
//   - proxy_get_header_map_value answers NotFound for a missing header
//     (ABI 0.2.x) and only the first value of a repeated header;
//   - shared data with CAS: the first CAS is 1, every write takes the next
//     one, a write with a non-zero stale CAS answers CasMismatch (8);
//   - metrics: ids carry the type in their low two bits and go up by 4
//     (counters 4, 8, ..., gauges 5, 9, ..., histograms 6, 10, ...); every
//     definition gets a new id, a repeated name shares the value;
//     incrementing a counter by <= 0 answers BadArgument;
//   - properties are raw bytes: strings as they are, integers as 8-byte
//     little-endian; an unknown path answers NotFound;
//   - after proxy_send_local_response the stream stops, whatever the callback
//     returns.
// What it does not reproduce: timers, HTTP and gRPC callouts (they answer
// BadArgument, as Envoy does for an unknown cluster), response processing,
// more than one VM, and Envoy's header validation.
//
// Only Node.js built-ins are used; there are no npm dependencies.

import { readFileSync } from "node:fs";
import { randomFillSync, randomUUID } from "node:crypto";

// The design documents' plugin configuration, byte for byte as in envoy.yaml.
const SEED_CONFIGURATION = String.raw`{"block_patterns": [".*\\.(exe|dll|scr|bat)$", ".*<script.*>.*</script>.*"], "rate_limit": {"requests_per_minute": 100, "burst": 20}}`;

// Names that Envoy's plugin_name / plugin_root_id / plugin_vm_id properties
// return for the repository's envoy.yaml.
const PLUGIN_NAME = "wasmguard";
const ROOT_ID_NAME = "wasmguard";
const VM_ID = "wasmguard";

// The requests the host runs, and what each must produce.
const REQUESTS = [
  { name: "blocked", method: "GET", path: "/download/evil.exe", client: "10.0.0.1:1234", want: "local_response", wantStatus: 403 },
  { name: "allowed", method: "GET", path: "/index.html", client: "10.0.0.1:1234", want: "continue" },
];

// Limits that keep a misbehaving module from making the host run away.
const MAX_LOG_LINES = 10000; // log lines kept in the result; later ones are counted only
const MAX_STDIO_BYTES = 1 << 20; // bytes of fd 1/2 output kept in the result

// Proxy-Wasm status codes (ABI 0.2.x).
const Status = {
  Ok: 0,
  NotFound: 1,
  BadArgument: 2,
  InvalidMemoryAccess: 6,
  Empty: 7,
  CasMismatch: 8,
  InternalFailure: 10,
  Unimplemented: 12,
};

// WASI errno values.
const Errno = { SUCCESS: 0, BADF: 8, FAULT: 21, NOSYS: 52, NOTSUP: 58 };

// Proxy-Wasm enums.
const Action = { Continue: 0, Pause: 1 };
const BufferType = { HttpRequestBody: 0, VmConfiguration: 6, PluginConfiguration: 7 };
const MapType = { HttpRequestHeaders: 0, HttpRequestTrailers: 1, HttpResponseHeaders: 2, HttpResponseTrailers: 3, Max: 7 };
const BUFFER_TYPE_MAX = 8;
const MetricType = { Counter: 0, Gauge: 1, Histogram: 2 };
const METRIC_TYPE_MASK = 0x3;
const METRIC_ID_INCREMENT = 0x4;
const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "critical"];
const ENVOY_LOG_LEVEL = 2; // info: Envoy's default level for the wasm logger

const WASI = "wasi_snapshot_preview1";

// cpp-host's restricted_callback allow-lists.
const ALLOWED_DURING_INITIALIZE = new Set([
  "env.proxy_log",
  `${WASI}.fd_write`,
  `${WASI}.args_sizes_get`,
  `${WASI}.args_get`,
  `${WASI}.environ_sizes_get`,
  `${WASI}.environ_get`,
  `${WASI}.fd_prestat_get`,
  `${WASI}.fd_prestat_dir_name`,
  `${WASI}.clock_time_get`,
  `${WASI}.random_get`,
  `${WASI}.fd_fdstat_get`,
  `${WASI}.fd_fdstat_set_flags`,
]);
const ALLOWED_DURING_ALLOCATE = new Set(["env.proxy_log", `${WASI}.fd_write`, `${WASI}.clock_time_get`]);

class Trap extends Error {}

const result = {
  ok: false,
  wasm: "",
  abi_version: "",
  imports: [],
  configuration: SEED_CONFIGURATION,
  plugin: { vm_start: null, configure: null },
  requests: [],
  metrics: {},
  shared_data_keys: 0,
  properties_read: [],
  calls: {},
  logs: [],
  logs_dropped: 0,
  stdout: "",
  stderr: "",
  deviations: [],
};

// Done ends main() early; finish throws it after printing the result.
class Done extends Error {}

// finish prints the result and ends the run. It sets process.exitCode instead
// of calling process.exit, so a large result is not cut off on a pipe.
function finish(code) {
  result.ok = code === 0 && result.deviations.length === 0;
  process.stdout.write(JSON.stringify(result, null, 2) + "\n");
  process.exitCode = result.ok ? 0 : code === 0 ? 1 : code;
  throw new Done();
}

function deviation(msg) {
  result.deviations.push(msg);
}

function main() {
  // ---------------------------------------------------------------- arguments

  const args = process.argv.slice(2);
  let wasmPath = "";
  let configuration = SEED_CONFIGURATION;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--config") {
      if (i + 1 >= args.length) {
        deviation("--config: missing file name");
        finish(2);
      }
      try {
        configuration = readFileSync(args[++i], "utf8");
      } catch (e) {
        deviation(`--config: ${e.message}`);
        finish(2);
      }
    } else if (wasmPath === "") {
      wasmPath = args[i];
    } else {
      deviation(`unexpected argument ${JSON.stringify(args[i])}`);
      finish(2);
    }
  }
  if (wasmPath === "") {
    deviation("usage: node host.mjs PATH/TO/security.wasm [--config FILE]");
    finish(2);
  }
  result.wasm = wasmPath;
  result.configuration = configuration;

  // ---------------------------------------------------------------- memory

  let instance = null;
  const enc = new TextEncoder();
  const dec = new TextDecoder("utf-8", { fatal: false });

  function bytes() {
    return new Uint8Array(instance.exports.memory.buffer);
  }
  function view() {
    return new DataView(instance.exports.memory.buffer);
  }
  function inBounds(ptr, len) {
    return ptr >= 0 && len >= 0 && ptr + len <= instance.exports.memory.buffer.byteLength;
  }
  // read returns a copy of guest memory, or null when the range is outside it.
  function read(ptr, len) {
    ptr >>>= 0;
    len >>>= 0;
    if (!inBounds(ptr, len)) return null;
    return bytes().slice(ptr, ptr + len);
  }
  function readString(ptr, len) {
    const b = read(ptr, len);
    return b === null ? null : dec.decode(b);
  }
  function setU32(ptr, v) {
    ptr >>>= 0;
    if (!inBounds(ptr, 4)) return false;
    view().setUint32(ptr, v >>> 0, true);
    return true;
  }
  function setU64(ptr, v) {
    ptr >>>= 0;
    if (!inBounds(ptr, 8)) return false;
    view().setBigUint64(ptr, BigInt.asUintN(64, BigInt(v)), true);
    return true;
  }

  // phase is "initialize", "allocate" or "callback"; it drives the
  // restricted_callback checks.
  const phases = [];
  function phase() {
    return phases.length ? phases[phases.length - 1] : "callback";
  }

  // allocate asks the module for size bytes, as cpp-host's allocMemory does.
  function allocate(size) {
    phases.push("allocate");
    let ptr;
    try {
      ptr = instance.exports.proxy_on_memory_allocate(size) >>> 0;
    } finally {
      phases.pop();
    }
    if (ptr === 0 || !inBounds(ptr, size)) {
      throw new Trap(`proxy_on_memory_allocate(${size}) returned ${ptr}`);
    }
    return ptr;
  }

  // copyToPointerSize mirrors cpp-host: an empty value writes (0, 0) without
  // allocating.
  function copyToPointerSize(data, ptrPtr, sizePtr) {
    let ptr = 0;
    if (data.length > 0) {
      ptr = allocate(data.length);
      bytes().set(data, ptr);
    }
    return setU32(ptrPtr, ptr) && setU32(sizePtr, data.length);
  }

  // Header maps use the SDK's serde.go encoding: u32 count, count pairs of
  // (u32 key length, u32 value length), then each key and value followed by NUL.
  function serializePairs(pairs) {
    const enc0 = pairs.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
    let size = 4 + 8 * enc0.length;
    for (const [k, v] of enc0) size += k.length + v.length + 2;
    const out = new Uint8Array(size);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, enc0.length, true);
    let p = 4;
    for (const [k, v] of enc0) {
      dv.setUint32(p, k.length, true);
      dv.setUint32(p + 4, v.length, true);
      p += 8;
    }
    for (const [k, v] of enc0) {
      out.set(k, p);
      p += k.length + 1;
      out.set(v, p);
      p += v.length + 1;
    }
    return out;
  }
  function deserializePairs(b) {
    if (b.length < 4) return [];
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const n = dv.getUint32(0, true);
    if (4 + 8 * n > b.length) return null;
    const sizes = [];
    for (let i = 0; i < n; i++) sizes.push([dv.getUint32(4 + 8 * i, true), dv.getUint32(8 + 8 * i, true)]);
    let p = 4 + 8 * n;
    const out = [];
    for (const [ks, vs] of sizes) {
      if (p + ks + vs + 2 > b.length) return null;
      const k = dec.decode(b.subarray(p, p + ks));
      p += ks + 1;
      const v = dec.decode(b.subarray(p, p + vs));
      p += vs + 1;
      out.push([k, v]);
    }
    return out;
  }

  // ---------------------------------------------------------------- host state

  const ROOT_CONTEXT_ID = 1;
  const contexts = new Map(); // id -> context
  let nextContextId = ROOT_CONTEXT_ID + 1;
  let currentContextId = 0;
  let effectiveContextId = 0;

  function context() {
    return contexts.get(effectiveContextId || currentContextId);
  }

  // Shared data (one vm_id): key -> { value, cas }.
  const sharedData = new Map();
  let nextCas = 1;
  function takeCas() {
    const c = nextCas;
    nextCas = (nextCas + 1) >>> 0;
    if (nextCas === 0) nextCas = 1;
    return c;
  }

  // Shared queues, kept minimal: name -> token, token -> array of values.
  const queueTokens = new Map();
  const queues = new Map();
  let nextQueueToken = 1;

  // Metrics: id -> { name, type }, name -> value.
  const metricIds = new Map();
  const metricValues = new Map();
  const nextMetricId = [MetricType.Counter, MetricType.Gauge, MetricType.Histogram];

  function log(level, message) {
    if (result.logs.length >= MAX_LOG_LINES) {
      result.logs_dropped++;
      return;
    }
    result.logs.push({ level: LOG_LEVELS[level] ?? String(level), context: currentContextId, message });
  }

  function appendStdio(which, text) {
    if (result[which].length < MAX_STDIO_BYTES) result[which] += text.slice(0, MAX_STDIO_BYTES - result[which].length);
  }

  // Properties as Envoy encodes them.
  function int64LE(n) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigInt64(0, BigInt(n), true);
    return b;
  }
  function header(ctx, name) {
    const h = ctx.headers?.find(([k]) => k === name);
    return h ? h[1] : undefined;
  }
  function property(ctx, path) {
    const s = (v) => (v === undefined ? undefined : enc.encode(v));
    switch (path) {
      case "plugin_name":
        return s(PLUGIN_NAME);
      case "plugin_root_id":
        return s(ROOT_ID_NAME);
      case "plugin_vm_id":
        return s(VM_ID);
    }
    if (!ctx || ctx.kind !== "http") return undefined;
    const port = splitHostPort(ctx.client)[1];
    const rawPath = header(ctx, ":path") ?? "";
    const q = rawPath.indexOf("?");
    switch (path) {
      case "source.address":
        return s(ctx.client);
      case "source.port":
        return int64LE(port);
      case "destination.address":
        return s("127.0.0.1:10000");
      case "destination.port":
        return int64LE(10000);
      case "request.path":
        return s(rawPath);
      case "request.url_path":
        return s(q < 0 ? rawPath : rawPath.slice(0, q));
      case "request.query":
        return s(q < 0 ? "" : rawPath.slice(q + 1));
      case "request.host":
        return s(header(ctx, ":authority"));
      case "request.scheme":
        return s(header(ctx, ":scheme"));
      case "request.method":
        return s(header(ctx, ":method"));
      case "request.id":
        return s(header(ctx, "x-request-id"));
      case "request.protocol":
        return s("HTTP/1.1");
      case "request.useragent":
        return s(header(ctx, "user-agent"));
      case "request.headers":
        return serializePairs(ctx.headers.filter(([k]) => !k.startsWith(":")));
      case "request.size":
        return int64LE(ctx.body ? ctx.body.length : 0);
    }
    return undefined;
  }
  function splitHostPort(addr) {
    const i = addr.lastIndexOf(":");
    return [addr.slice(0, i), Number(addr.slice(i + 1))];
  }

  function headerMap(ctx, type) {
    if (!ctx || ctx.kind !== "http") return null;
    if (type === MapType.HttpRequestHeaders) return ctx.headers;
    if (type === MapType.HttpRequestTrailers) return ctx.trailers;
    return null; // no response processing in this host
  }

  function buffer(ctx, type) {
    switch (type) {
      case BufferType.VmConfiguration:
        return ctx?.vmConfiguration ?? null;
      case BufferType.PluginConfiguration:
        return ctx?.pluginConfiguration ?? null;
      case BufferType.HttpRequestBody:
        return ctx?.kind === "http" && ctx.bodyAvailable ? ctx.body : null;
    }
    return null;
  }

  // ---------------------------------------------------------------- env.proxy_*

  const env = {
    proxy_log(level, ptr, size) {
      if (level > LOG_LEVELS.length) return Status.BadArgument;
      const msg = readString(ptr, size);
      if (msg === null) return Status.InvalidMemoryAccess;
      log(level, msg);
      return Status.Ok;
    },
    proxy_get_log_level(ptr) {
      return setU32(ptr, ENVOY_LOG_LEVEL) ? Status.Ok : Status.InvalidMemoryAccess;
    },
    proxy_get_current_time_nanoseconds(ptr) {
      return setU64(ptr, BigInt(Date.now()) * 1000000n) ? Status.Ok : Status.InvalidMemoryAccess;
    },
    proxy_set_tick_period_milliseconds() {
      return Status.Ok; // accepted; this host never ticks
    },
    proxy_get_status() {
      return Status.NotFound; // only meaningful in callout callbacks, which never happen here
    },
    proxy_set_effective_context(id) {
      if (!contexts.has(id >>> 0)) return Status.BadArgument;
      effectiveContextId = id >>> 0;
      return Status.Ok;
    },
    proxy_done() {
      return Status.Ok;
    },
    proxy_call_foreign_function() {
      return Status.NotFound; // no foreign function is registered
    },
    proxy_get_property(pathPtr, pathSize, retPtr, retSize) {
      const raw = read(pathPtr, pathSize);
      if (raw === null) return Status.InvalidMemoryAccess;
      const path = dec.decode(raw).split("\0").join(".");
      if (!result.properties_read.includes(path)) result.properties_read.push(path);
      const v = property(context(), path);
      if (v === undefined) return Status.NotFound;
      return copyToPointerSize(v, retPtr, retSize) ? Status.Ok : Status.InvalidMemoryAccess;
    },
    proxy_set_property(pathPtr, pathSize, valuePtr, valueSize) {
      if (read(pathPtr, pathSize) === null || read(valuePtr, valueSize) === null) return Status.InvalidMemoryAccess;
      return Status.Ok;
    },
    proxy_continue_stream(type) {
      if (type > 3) return Status.BadArgument;
      const ctx = context();
      if (ctx?.kind === "http") ctx.continued.push(type);
      return Status.Ok;
    },
    proxy_continue_request() {
      return env.proxy_continue_stream(0);
    },
    proxy_continue_response() {
      return env.proxy_continue_stream(1);
    },
    proxy_close_stream(type) {
      if (type > 3) return Status.BadArgument;
      const ctx = context();
      if (ctx?.kind === "http") ctx.closed = true;
      return Status.Ok;
    },
    proxy_clear_route_cache() {
      return Status.Ok;
    },
    proxy_send_local_response(status, detailsPtr, detailsSize, bodyPtr, bodySize, headersPtr, headersSize, grpcStatus) {
      const details = read(detailsPtr, detailsSize);
      const body = read(bodyPtr, bodySize);
      const hdrs = read(headersPtr, headersSize);
      if (details === null || body === null || hdrs === null) return Status.InvalidMemoryAccess;
      const ctx = context();
      if (!ctx || ctx.kind !== "http") return Status.BadArgument;
      const pairs = deserializePairs(hdrs);
      ctx.local = {
        status: status >>> 0,
        details: dec.decode(details),
        headers: pairs ?? [],
        body: dec.decode(body),
        grpc_status: grpcStatus,
      };
      if (pairs === null) deviation(`proxy_send_local_response: malformed header map (${hdrs.length} bytes)`);
      return Status.Ok;
    },
    proxy_get_shared_data(keyPtr, keySize, retPtr, retSize, casPtr) {
      const key = readString(keyPtr, keySize);
      if (key === null) return Status.InvalidMemoryAccess;
      const e = sharedData.get(key);
      if (!e) return Status.NotFound;
      if (!copyToPointerSize(e.value, retPtr, retSize)) return Status.InvalidMemoryAccess;
      return setU32(casPtr, e.cas) ? Status.Ok : Status.InvalidMemoryAccess;
    },
    proxy_set_shared_data(keyPtr, keySize, valuePtr, valueSize, cas) {
      const key = readString(keyPtr, keySize);
      const value = read(valuePtr, valueSize);
      if (key === null || value === null) return Status.InvalidMemoryAccess;
      const e = sharedData.get(key);
      cas >>>= 0;
      if (e && cas !== 0 && cas !== e.cas) return Status.CasMismatch;
      sharedData.set(key, { value, cas: takeCas() });
      return Status.Ok;
    },
    proxy_register_shared_queue(namePtr, nameSize, tokenPtr) {
      const name = readString(namePtr, nameSize);
      if (name === null) return Status.InvalidMemoryAccess;
      let t = queueTokens.get(name);
      if (t === undefined) {
        t = nextQueueToken++;
        queueTokens.set(name, t);
        queues.set(t, []);
      }
      return setU32(tokenPtr, t) ? Status.Ok : Status.InvalidMemoryAccess;
    },
    proxy_resolve_shared_queue(vmPtr, vmSize, namePtr, nameSize, tokenPtr) {
      const vm = readString(vmPtr, vmSize);
      const name = readString(namePtr, nameSize);
      if (vm === null || name === null) return Status.InvalidMemoryAccess;
      const t = vm === VM_ID || vm === "" ? queueTokens.get(name) : undefined;
      if (t === undefined) return Status.NotFound;
      return setU32(tokenPtr, t) ? Status.Ok : Status.InvalidMemoryAccess;
    },
    proxy_enqueue_shared_queue(token, dataPtr, dataSize) {
      const data = read(dataPtr, dataSize);
      if (data === null) return Status.InvalidMemoryAccess;
      const q = queues.get(token >>> 0);
      if (!q) return Status.NotFound;
      q.push(data);
      return Status.Ok;
    },
    proxy_dequeue_shared_queue(token, retPtr, retSize) {
      const q = queues.get(token >>> 0);
      if (!q) return Status.NotFound;
      if (q.length === 0) return Status.Empty;
      return copyToPointerSize(q.shift(), retPtr, retSize) ? Status.Ok : Status.InvalidMemoryAccess;
    },
    proxy_get_header_map_value(type, keyPtr, keySize, retPtr, retSize) {
      if (type > MapType.Max) return Status.BadArgument;
      const key = readString(keyPtr, keySize);
      if (key === null) return Status.InvalidMemoryAccess;
      const m = headerMap(context(), type);
      if (!m) return Status.NotFound;
      const h = m.find(([k]) => k === key.toLowerCase());
      if (!h) return Status.NotFound;
      return copyToPointerSize(enc.encode(h[1]), retPtr, retSize) ? Status.Ok : Status.InvalidMemoryAccess;
    },
    proxy_get_header_map_pairs(type, retPtr, retSize) {
      if (type > MapType.Max) return Status.BadArgument;
      const m = headerMap(context(), type);
      if (!m) return Status.NotFound;
      const data = m.length ? serializePairs(m) : new Uint8Array(0);
      return copyToPointerSize(data, retPtr, retSize) ? Status.Ok : Status.InvalidMemoryAccess;
    },
    proxy_get_header_map_size(type, retPtr) {
      if (type > MapType.Max) return Status.BadArgument;
      const m = headerMap(context(), type);
      if (!m) return Status.NotFound;
      return setU32(retPtr, serializePairs(m).length) ? Status.Ok : Status.InvalidMemoryAccess;
    },
    proxy_add_header_map_value(type, keyPtr, keySize, valuePtr, valueSize) {
      if (type > MapType.Max) return Status.BadArgument;
      const key = readString(keyPtr, keySize);
      const value = readString(valuePtr, valueSize);
      if (key === null || value === null) return Status.InvalidMemoryAccess;
      const m = headerMap(context(), type);
      if (!m) return Status.NotFound;
      m.push([key.toLowerCase(), value]);
      return Status.Ok;
    },
    proxy_replace_header_map_value(type, keyPtr, keySize, valuePtr, valueSize) {
      if (type > MapType.Max) return Status.BadArgument;
      const key = readString(keyPtr, keySize);
      const value = readString(valuePtr, valueSize);
      if (key === null || value === null) return Status.InvalidMemoryAccess;
      const m = headerMap(context(), type);
      if (!m) return Status.NotFound;
      const k = key.toLowerCase();
      const rest = m.filter(([n]) => n !== k);
      m.length = 0;
      m.push(...rest, [k, value]);
      return Status.Ok;
    },
    proxy_remove_header_map_value(type, keyPtr, keySize) {
      if (type > MapType.Max) return Status.BadArgument;
      const key = readString(keyPtr, keySize);
      if (key === null) return Status.InvalidMemoryAccess;
      const m = headerMap(context(), type);
      if (!m) return Status.NotFound;
      const k = key.toLowerCase();
      const rest = m.filter(([n]) => n !== k);
      m.length = 0;
      m.push(...rest);
      return Status.Ok;
    },
    proxy_set_header_map_pairs(type, ptr, size) {
      if (type > MapType.Max) return Status.BadArgument;
      const raw = read(ptr, size);
      if (raw === null) return Status.InvalidMemoryAccess;
      const m = headerMap(context(), type);
      if (!m) return Status.NotFound;
      const pairs = deserializePairs(raw);
      if (pairs === null) return Status.BadArgument;
      m.length = 0;
      m.push(...pairs.map(([k, v]) => [k.toLowerCase(), v]));
      return Status.Ok;
    },
    proxy_get_buffer_status(type, lengthPtr, flagsPtr) {
      if (type > BUFFER_TYPE_MAX) return Status.BadArgument;
      const b = buffer(context(), type);
      if (!b) return Status.NotFound;
      return setU32(lengthPtr, b.length) && setU32(flagsPtr, 0) ? Status.Ok : Status.InvalidMemoryAccess;
    },
    proxy_get_buffer_bytes(type, start, length, retPtr, retSize) {
      if (type > BUFFER_TYPE_MAX) return Status.BadArgument;
      const b = buffer(context(), type);
      if (!b) return Status.NotFound;
      start >>>= 0;
      length >>>= 0;
      if (start > b.length) return Status.BadArgument;
      if (start + length > b.length) length = b.length - start;
      if (length === 0) return Status.Ok; // cpp-host writes nothing in this case
      return copyToPointerSize(b.subarray(start, start + length), retPtr, retSize) ? Status.Ok : Status.InvalidMemoryAccess;
    },
    proxy_set_buffer_bytes(type, start, length, dataPtr, dataSize) {
      const data = read(dataPtr, dataSize);
      if (data === null) return Status.InvalidMemoryAccess;
      const ctx = context();
      if (type !== BufferType.HttpRequestBody || !buffer(ctx, type)) return Status.NotFound;
      const b = ctx.body;
      start = Math.min(start >>> 0, b.length);
      const end = Math.min(start + (length >>> 0), b.length);
      const out = new Uint8Array(b.length - (end - start) + data.length);
      out.set(b.subarray(0, start), 0);
      out.set(data, start);
      out.set(b.subarray(end), start + data.length);
      ctx.body = out;
      return Status.Ok;
    },
    proxy_http_call() {
      return Status.BadArgument; // Envoy's answer for a cluster it does not know
    },
    proxy_grpc_call() {
      return Status.BadArgument;
    },
    proxy_grpc_stream() {
      return Status.BadArgument;
    },
    proxy_grpc_send() {
      return Status.NotFound;
    },
    proxy_grpc_cancel() {
      return Status.NotFound;
    },
    proxy_grpc_close() {
      return Status.NotFound;
    },
    proxy_define_metric(type, namePtr, nameSize, retPtr) {
      if (type > MetricType.Histogram) return Status.BadArgument;
      const name = readString(namePtr, nameSize);
      if (name === null) return Status.InvalidMemoryAccess;
      nextMetricId[type] += METRIC_ID_INCREMENT; // Envoy pre-increments: the first counter is 4
      const id = nextMetricId[type];
      metricIds.set(id, { name, type });
      if (!metricValues.has(name)) metricValues.set(name, 0n);
      return setU32(retPtr, id) ? Status.Ok : Status.InvalidMemoryAccess;
    },
    proxy_increment_metric(id, offset) {
      const m = metricIds.get(id >>> 0);
      if (!m) return Status.NotFound;
      offset = BigInt(offset);
      if (m.type === MetricType.Counter) {
        if (offset <= 0n) return Status.BadArgument;
      } else if (m.type !== MetricType.Gauge) {
        return Status.BadArgument;
      }
      metricValues.set(m.name, metricValues.get(m.name) + offset);
      return Status.Ok;
    },
    proxy_record_metric(id, value) {
      const m = metricIds.get(id >>> 0);
      if (!m) return Status.NotFound;
      value = BigInt.asUintN(64, BigInt(value));
      if (m.type === MetricType.Counter) {
        const cur = metricValues.get(m.name);
        if (value > cur) metricValues.set(m.name, value);
      } else if (m.type === MetricType.Gauge) {
        metricValues.set(m.name, value);
      } else {
        metricValues.set(m.name, metricValues.get(m.name) + 1n); // histograms: count samples
      }
      return Status.Ok;
    },
    proxy_get_metric(id, retPtr) {
      const m = metricIds.get(id >>> 0);
      if (!m) return Status.NotFound;
      if (m.type === MetricType.Histogram) return Status.BadArgument;
      return setU64(retPtr, metricValues.get(m.name)) ? Status.Ok : Status.InvalidMemoryAccess;
    },
  };

  // ---------------------------------------------------------------- WASI

  function fdWrite(fd, iovs, iovsLen, nwrittenPtr) {
    if (fd !== 1 && fd !== 2) return Errno.BADF;
    const parts = [];
    for (let i = 0; i < iovsLen >>> 0; i++) {
      const iov = read(iovs + 8 * i, 8);
      if (iov === null) return Errno.FAULT;
      const dv = new DataView(iov.buffer);
      const data = read(dv.getUint32(0, true), dv.getUint32(4, true));
      if (data === null) return Errno.FAULT;
      parts.push(data);
    }
    let text = parts.map((p) => dec.decode(p)).join("");
    const written = parts.reduce((n, p) => n + p.length, 0);
    appendStdio(fd === 1 ? "stdout" : "stderr", text);
    if (text.endsWith("\n")) text = text.slice(0, -1);
    if (text.length) log(fd === 1 ? 2 : 4, text);
    return setU32(nwrittenPtr, written) ? Errno.SUCCESS : Errno.FAULT;
  }

  const wasi = {
    fd_write: fdWrite,
    fd_read() {
      return Errno.NOSYS;
    },
    fd_seek() {
      log(4, "wasi fd_seek called: not supported by Envoy");
      return Errno.SUCCESS;
    },
    fd_close() {
      log(4, "wasi fd_close called: not supported by Envoy");
      return Errno.SUCCESS;
    },
    fd_fdstat_get(fd, statPtr) {
      if (fd !== 1 && fd !== 2) return Errno.BADF;
      // 24-byte fdstat: filetype/flags 0, rights_base = FD_WRITE (64), inheriting 0.
      return setU64(statPtr, 0) && setU64(statPtr + 8, 64) && setU64(statPtr + 16, 0) ? Errno.SUCCESS : Errno.FAULT;
    },
    fd_fdstat_set_flags() {
      return Errno.NOSYS;
    },
    environ_sizes_get(countPtr, sizePtr) {
      return setU32(countPtr, 0) && setU32(sizePtr, 0) ? Errno.SUCCESS : Errno.FAULT;
    },
    environ_get() {
      return Errno.SUCCESS;
    },
    args_sizes_get(countPtr, sizePtr) {
      return setU32(countPtr, 0) && setU32(sizePtr, 0) ? Errno.SUCCESS : Errno.FAULT;
    },
    args_get() {
      return Errno.SUCCESS;
    },
    clock_time_get(id, _precision, timePtr) {
      let t;
      if (id === 0) t = BigInt(Date.now()) * 1000000n;
      else if (id === 1) t = process.hrtime.bigint();
      else return Errno.NOTSUP;
      return setU64(timePtr, t) ? Errno.SUCCESS : Errno.FAULT;
    },
    random_get(ptr, len) {
      ptr >>>= 0;
      len >>>= 0;
      if (!inBounds(ptr, len)) return Errno.FAULT;
      randomFillSync(bytes(), ptr, len);
      return Errno.SUCCESS;
    },
    sched_yield() {
      return Errno.SUCCESS;
    },
    poll_oneoff() {
      return Errno.NOSYS;
    },
    proc_exit(code) {
      throw new Trap(`proc_exit(${code})`);
    },
    path_open() {
      return Errno.BADF; // there are no preopened directories, so no dirfd is valid
    },
    fd_prestat_get() {
      return Errno.BADF; // no preopens: Go's syscall init stops at the first EBADF
    },
    fd_prestat_dir_name() {
      return Errno.BADF;
    },
  };

  // ---------------------------------------------------------------- linking

  // wrap counts calls and enforces cpp-host's restricted_callback rules.
  function wrap(module, name, fn) {
    const full = `${module}.${name}`;
    return (...a) => {
      result.calls[full] = (result.calls[full] ?? 0) + 1;
      const p = phase();
      if (p === "initialize" && !ALLOWED_DURING_INITIALIZE.has(full)) {
        throw new Trap(`restricted_callback: ${full} called during _initialize`);
      }
      if (p === "allocate" && !ALLOWED_DURING_ALLOCATE.has(full)) {
        throw new Trap(`restricted_callback: ${full} called inside proxy_on_memory_allocate`);
      }
      return fn(...a);
    };
  }

  let wasmModule;
  try {
    wasmModule = new WebAssembly.Module(readFileSync(wasmPath));
  } catch (e) {
    deviation(`load ${wasmPath}: ${e.message}`);
    finish(2);
  }

  const provided = { env, [WASI]: wasi };
  const importObject = { env: {}, [WASI]: {} };
  const missing = [];
  for (const imp of WebAssembly.Module.imports(wasmModule)) {
    const full = `${imp.module}.${imp.name}`;
    if (!result.imports.includes(full)) result.imports.push(full);
    const fn = provided[imp.module]?.[imp.name];
    if (imp.kind !== "function" || typeof fn !== "function") {
      missing.push(full);
      continue;
    }
    importObject[imp.module][imp.name] = wrap(imp.module, imp.name, fn);
  }
  if (missing.length) {
    deviation(`Failed to load Wasm module due to a missing import: ${missing.join(", ")}`);
    finish(2);
  }

  const exportNames = WebAssembly.Module.exports(wasmModule).map((e) => e.name);
  result.abi_version = exportNames.find((n) => /^proxy_abi_version_0_2_\d+$/.test(n)) ?? "";
  for (const need of ["memory", "_initialize", "proxy_on_memory_allocate", "proxy_on_context_create"]) {
    if (!exportNames.includes(need)) deviation(`module does not export ${need}`);
  }
  if (result.abi_version === "") deviation("module exports no proxy_abi_version_0_2_* function");
  if (result.deviations.length) finish(2);

  try {
    instance = new WebAssembly.Instance(wasmModule, importObject);
  } catch (e) {
    deviation(`instantiate: ${e.message}`);
    finish(2);
  }

  // ---------------------------------------------------------------- driving

  // call runs one export inside a context and turns a trap into a deviation.
  function call(ctxId, name, ...a) {
    const fn = instance.exports[name];
    if (typeof fn !== "function") throw new Trap(`module does not export ${name}`);
    const prev = currentContextId;
    currentContextId = ctxId;
    effectiveContextId = 0;
    try {
      return fn(...a);
    } catch (e) {
      throw new Trap(`${name}: ${e.message}`);
    } finally {
      currentContextId = prev;
      effectiveContextId = 0;
    }
  }

  function runRequest(spec) {
    const id = nextContextId++;
    const ctx = {
      id,
      kind: "http",
      client: spec.client,
      headers: [
        [":authority", "127.0.0.1:10000"],
        [":path", spec.path],
        [":method", spec.method],
        [":scheme", "http"],
        ["user-agent", "wasmguard-v8-host"],
        ["accept", "*/*"],
        ["x-forwarded-for", splitHostPort(spec.client)[0]],
        ["x-forwarded-proto", "http"],
        ["x-request-id", randomUUID()],
      ],
      trailers: [],
      body: spec.body ? enc.encode(spec.body) : null,
      bodyAvailable: false,
      local: null,
      continued: [],
      closed: false,
    };
    contexts.set(id, ctx);
    const rec = { name: spec.name, method: spec.method, path: spec.path, client: spec.client, actions: [], verdict: "", local_response: null, continued: false };
    result.requests.push(rec);

    call(id, "proxy_on_context_create", id, ROOT_CONTEXT_ID);
    let action = call(id, "proxy_on_request_headers", id, ctx.headers.length, ctx.body ? 0 : 1);
    rec.actions.push({ callback: "proxy_on_request_headers", action: action === Action.Continue ? "continue" : "pause" });
    if (!ctx.local && ctx.body) {
      ctx.bodyAvailable = true;
      action = call(id, "proxy_on_request_body", id, ctx.body.length, 1);
      ctx.bodyAvailable = false;
      rec.actions.push({ callback: "proxy_on_request_body", action: action === Action.Continue ? "continue" : "pause" });
    }
    rec.continued = ctx.continued.includes(0);
    if (ctx.local) {
      rec.verdict = "local_response"; // Envoy stops the stream after a local reply, whatever was returned
      rec.local_response = ctx.local;
    } else if (action === Action.Continue || rec.continued) {
      rec.verdict = "continue";
    } else {
      rec.verdict = "paused";
    }
    call(id, "proxy_on_done", id);
    call(id, "proxy_on_log", id);
    call(id, "proxy_on_delete", id);
    contexts.delete(id);

    if (rec.verdict !== spec.want) {
      deviation(`${spec.name} ${spec.method} ${spec.path}: verdict ${rec.verdict}, want ${spec.want}`);
    } else if (spec.wantStatus && rec.local_response.status !== spec.wantStatus) {
      deviation(`${spec.name} ${spec.method} ${spec.path}: local response status ${rec.local_response.status}, want ${spec.wantStatus}`);
    }
  }

  try {
    phases.push("initialize");
    try {
      instance.exports._initialize();
    } catch (e) {
      throw new Trap(`_initialize: ${e.message}`);
    } finally {
      phases.pop();
    }

    const root = {
      id: ROOT_CONTEXT_ID,
      kind: "root",
      vmConfiguration: null,
      pluginConfiguration: null,
    };
    contexts.set(ROOT_CONTEXT_ID, root);
    call(ROOT_CONTEXT_ID, "proxy_on_context_create", ROOT_CONTEXT_ID, 0);

    root.vmConfiguration = new Uint8Array(0); // envoy.yaml sets no vm_config.configuration
    result.plugin.vm_start = call(ROOT_CONTEXT_ID, "proxy_on_vm_start", ROOT_CONTEXT_ID, 0) !== 0;
    root.vmConfiguration = null;
    if (!result.plugin.vm_start) throw new Trap("proxy_on_vm_start returned false: Envoy refuses the VM");

    root.pluginConfiguration = enc.encode(configuration);
    result.plugin.configure = call(ROOT_CONTEXT_ID, "proxy_on_configure", ROOT_CONTEXT_ID, root.pluginConfiguration.length) !== 0;
    root.pluginConfiguration = null;
    if (!result.plugin.configure) throw new Trap("proxy_on_configure returned false: Envoy refuses the plugin");

    for (const spec of REQUESTS) runRequest(spec);
  } catch (e) {
    if (!(e instanceof Trap)) throw e;
    deviation(e.message);
  }

  for (const [name, v] of metricValues) result.metrics[name] = Number(v);
  result.shared_data_keys = sharedData.size;
  finish(0);
}

try {
  main();
} catch (e) {
  if (!(e instanceof Done)) throw e;
}
