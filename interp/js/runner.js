/* interp/js/runner.js: the Node.js side of cellbox's JavaScript and
 * TypeScript kernels (interp/node.c starts it and is its only client).
 *
 * Embedded into the cellbox binary at build time (interp/noderunner.c) and
 * handed to `node` on fd 5; it runs as a plain function body with `require`
 * (vm.compileFunction), so use only what Node 18 has and no npm packages.
 *
 * Channels (JSON lines, one object a line):
 *   fd 3  requests from the kernel: {op: execute|complete|inspect|is_complete, ...}
 *         and answers to input(): {op: "input_reply", id, status, value}
 *   fd 4  messages to the kernel:   {t: ready|stream|pub|reply|input|input_cancel, ...}
 * Every request gets exactly one {t: "reply", content} after its output.
 * input() sends {t: "input", id, prompt, password}; the kernel asks the
 * frontend (while a cell runs) and answers with an input_reply of that id,
 * which is handled at once, not queued behind requests. An interrupt
 * rejects the pending inputs here and says so with {t: "input_cancel", id}.
 * fd 1 and fd 2 stay the kernel's capture pipes: subprocesses write there.
 * process.stdout/stderr.write (so console.*) go through fd 4 instead, so
 * that stdout and stderr keep their order.
 *
 * One vm context holds the user's globals across cells; top-level
 * let/const/class persist as in Node's REPL (same context, script scope).
 * Top-level await uses the REPL's own rewrite (internal/repl/await, node is
 * started with --expose-internals) when it is there.
 *
 * Interrupts: the kernel forwards SIGINT to this process. Synchronous code
 * stops through vm's breakOnSigint; a pending top-level await is rejected
 * by the SIGINT listener. Code that spins after an await cannot be stopped
 * from here: the kernel kills and restarts the process after a grace time.
 */
'use strict';
const fs = require('fs');
const net = require('net');
const path = require('path');
const util = require('util');
const vm = require('vm');
const Module = require('module');

const LANG = process.argv.includes('typescript') ? 'typescript' : 'javascript';
const OUT_FD = 4;
fs.closeSync(5);  /* our own source, read by the bootstrap */

/* ------------------------------------------------------------------ channel */

function send(obj) {
    const line = JSON.stringify(obj) + '\n';
    const buf = Buffer.from(line, 'utf8');
    let off = 0;
    while (off < buf.length) {
        try {
            off += fs.writeSync(OUT_FD, buf, off, buf.length - off);
        } catch (e) {
            if (e.code === 'EAGAIN')
                continue;
            process.exit(1);  /* the kernel is gone */
        }
    }
}

function chunkText(chunk, encoding) {
    if (typeof chunk === 'string')
        return chunk;
    if (chunk instanceof Uint8Array)
        return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString(encoding && encoding !== 'buffer' ? encoding : 'utf8');
    return String(chunk);
}

function redirect(stream, name) {
    stream.write = function write(chunk, encoding, cb) {
        if (typeof encoding === 'function') {
            cb = encoding;
            encoding = undefined;
        }
        const text = chunkText(chunk, encoding);
        if (text.length)
            send({t: 'stream', name, text});
        if (typeof cb === 'function')
            process.nextTick(cb);
        return true;
    };
}
redirect(process.stdout, 'stdout');
redirect(process.stderr, 'stderr');

function publish(msgType, content) {
    send({t: 'pub', msg_type: msgType, content});
}

/* ------------------------------------------------------------------ TypeScript */

let ts = null, tsError = null;
if (LANG === 'typescript') {
    for (const where of ['/usr/share/nodejs/typescript', 'typescript']) {
        try {
            ts = require(where);
            break;
        } catch (e) {
            tsError = e.message.split('\n')[0];
        }
    }
}

/* TS -> JS for one cell. Only syntax errors are reported (transpile-only). */
function tsTranspile(code, filename) {
    const out = ts.transpileModule(code, {
        fileName: filename + '.ts',
        reportDiagnostics: true,
        compilerOptions: {
            target: ts.ScriptTarget.ES2022,
            module: ts.ModuleKind.CommonJS,
            esModuleInterop: true,
            sourceMap: false,
            removeComments: false,
        },
    });
    const errs = (out.diagnostics || []).filter(d => d.category === ts.DiagnosticCategory.Error);
    return {js: out.outputText, errors: errs};
}

function tsDiagText(d, filename) {
    const msg = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (d.file && d.start !== undefined) {
        const {line, character} = d.file.getLineAndCharacterOfPosition(d.start);
        return {msg: `TS${d.code}: ${msg}`, where: `${filename}:${line + 1}:${character + 1}`, line, character, d};
    }
    return {msg: `TS${d.code}: ${msg}`, where: filename};
}

/* ------------------------------------------------------------------ input */

/* input(prompt, {password}) -> a Promise of the line the user typed, asked
 * of the frontend through the kernel (input_request on the stdin channel),
 * as Python's input() in Jupyter. Function declarations: hoisted into the
 * sandbox below. */
let inputSeq = 0;
const inputsWaiting = new Map();  /* id -> {resolve, reject} */

function stdinError(message) {
    const e = new CtxError(message);
    e.name = 'StdinNotImplementedError';
    e.stack = e.name + ': ' + e.message;
    return e;
}

function cellInput(prompt = '', {password = false} = {}) {
    const id = ++inputSeq;
    return new CtxPromise((resolve, reject) => {
        inputsWaiting.set(id, {resolve, reject});
        send({t: 'input', id, prompt: String(prompt), password: !!password});
    });
}
Object.defineProperty(cellInput, 'name', {value: 'input'});

/* prompt(text): input without options (browser-style code; async here) */
function cellPrompt(text = '') {
    return cellInput(text);
}
Object.defineProperty(cellPrompt, 'name', {value: 'prompt'});

function inputReply(r) {
    const w = inputsWaiting.get(r.id);
    if (!w)
        return;  /* cancelled by an interrupt already */
    inputsWaiting.delete(r.id);
    switch (r.status) {
    case 'ok':
        w.resolve(typeof r.value === 'string' ? r.value : '');
        break;
    case 'interrupted':
        w.reject(interruptError());
        break;
    case 'not_allowed':
        w.reject(stdinError('input was called, but this frontend does not support input requests.'));
        break;
    case 'no_cell':
        w.reject(stdinError('input was called while no cell was running: only code of a running cell '
                            + 'can ask the frontend for input.'));
        break;
    default:
        w.reject(new CtxError('input failed: the kernel could not ask the frontend (it is shutting down)'));
    }
}

function cancelInputs() {
    for (const [id, w] of inputsWaiting) {
        inputsWaiting.delete(id);
        send({t: 'input_cancel', id});
        w.reject(interruptError());
    }
}

/* ------------------------------------------------------------------ the context */

const cellRequire = Module.createRequire(path.join(process.cwd(), '<cell>'));
const cellModule = {exports: {}, require: cellRequire, id: '<cell>', filename: path.join(process.cwd(), '<cell>')};

function mimeBundle(data, metadata, opts) {
    if (!data || typeof data !== 'object')
        throw new TypeError('display.mimeBundle(data): data must be an object {mime: value}');
    const content = {data: {}, metadata: metadata || {}, transient: {}};
    for (const [k, v] of Object.entries(data))
        content.data[k] = (typeof v === 'string' || k.endsWith('json')) ? v : String(v);
    const id = opts && (opts.display_id || opts.displayId);
    if (id)
        content.transient.display_id = String(id);
    publish(opts && opts.update ? 'update_display_data' : 'display_data', content);
}

function b64(x) {
    if (typeof x === 'string')
        return x.replace(/^data:[^,]*;base64,/, '');
    return Buffer.from(x).toString('base64');
}

function display(value, opts) {
    mimeBundle({'text/plain': typeof value === 'string' ? value : util.inspect(value)}, {}, opts);
}
display.mimeBundle = mimeBundle;
display.text = (s, o) => mimeBundle({'text/plain': String(s)}, {}, o);
display.html = (s, o) => mimeBundle({'text/html': String(s)}, {}, o);
display.markdown = (s, o) => mimeBundle({'text/markdown': String(s)}, {}, o);
display.svg = (s, o) => mimeBundle({'image/svg+xml': String(s)}, {}, o);
display.latex = (s, o) => mimeBundle({'text/latex': String(s)}, {}, o);
display.javascript = (s, o) => mimeBundle({'application/javascript': String(s)}, {}, o);
display.png = (x, o) => mimeBundle({'image/png': b64(x)}, {}, o);
display.jpeg = (x, o) => mimeBundle({'image/jpeg': b64(x)}, {}, o);
display.json = (obj, o) => mimeBundle({'application/json': JSON.parse(JSON.stringify(obj === undefined ? null : obj)),
                                       'text/plain': util.inspect(obj)}, {}, o);
display.clear = (wait) => publish('clear_output', {wait: !!wait});
Object.freeze(display);

const sandbox = {
    console, process, Buffer, require: cellRequire, module: cellModule, exports: cellModule.exports,
    __filename: cellModule.filename, __dirname: process.cwd(),
    setTimeout, clearTimeout, setInterval, clearInterval, setImmediate, clearImmediate, queueMicrotask,
    structuredClone, URL, URLSearchParams, TextEncoder, TextDecoder, AbortController, AbortSignal,
    EventTarget, Event, atob, btoa, performance, display,
    input: cellInput, prompt: cellPrompt,
};
for (const name of ['fetch', 'Headers', 'Request', 'Response', 'FormData', 'Blob', 'BroadcastChannel',
                    'MessageChannel', 'MessagePort', 'crypto', 'WebAssembly'])
    if (globalThis[name] !== undefined)
        sandbox[name] = globalThis[name];
sandbox.global = sandbox;
const ctx = vm.createContext(sandbox, {name: 'cellbox'});
vm.runInContext('globalThis.global = globalThis;', ctx);
/* the cells' own Promise and Error, so that what input() gives passes
 * `instanceof Promise` / `instanceof Error` in a cell */
const CtxPromise = vm.runInContext('Promise', ctx);
const CtxError = vm.runInContext('Error', ctx);

/* names declared with let/const/class at the top of cells (not properties
 * of the global object, so completion must remember them) */
const lexicalNames = new Set();

function noteDeclarations(code) {
    const re = /(?:^|[;\n{}])\s*(?:export\s+)?(?:let|const|var|class|function\*?|async\s+function\*?)\s+([A-Za-z_$][\w$]*)/g;
    let m;
    while ((m = re.exec(code)))
        lexicalNames.add(m[1]);
    const destr = /(?:^|[;\n])\s*(?:let|const|var)\s*[{[]([^=]*)[}\]]\s*=/g;
    while ((m = destr.exec(code)))
        for (const part of m[1].split(','))
            {
                const id = part.split(':').pop().split('=')[0].replace(/[.\s]/g, '');
                if (/^[A-Za-z_$][\w$]*$/.test(id))
                    lexicalNames.add(id);
            }
}

/* ------------------------------------------------------------------ re-runnable cells */

/* Top-level let/const/class become var (class C {} -> var C = class C {};)
 * so that running a cell again does not fail with "Identifier 'x' has
 * already been declared", as notebooks expect (Deno's kernel gets the same
 * from V8's REPL mode, which node:vm does not offer). The price: a top-level
 * const can be reassigned. Parsed with the acorn inside node (the REPL's);
 * without it, or on a syntax error, the code is left as it is. */
let acorn = null;
try {
    acorn = require('internal/deps/acorn/acorn/dist/acorn');
} catch (e) {
    acorn = null;
}

function redeclarable(code) {
    if (!acorn || !/\b(let|const|class)\b/.test(code))
        return code;
    let ast;
    try {
        ast = acorn.parse(code, {ecmaVersion: 'latest', sourceType: 'script', allowAwaitOutsideFunction: true,
                                 allowHashBang: true});
    } catch (e) {
        return code;
    }
    const edits = [];
    for (const n of ast.body) {
        if (n.type === 'VariableDeclaration' && n.kind !== 'var')
            edits.push([n.start, n.start + n.kind.length, 'var']);
        else if (n.type === 'ClassDeclaration' && n.id)
            edits.push([n.start, n.start, `var ${n.id.name} = `], [n.end, n.end, ';']);
    }
    edits.sort((a, b) => b[0] - a[0]);
    for (const [from, to, text] of edits)
        code = code.slice(0, from) + text + code.slice(to);
    return code;
}

/* ------------------------------------------------------------------ top-level await */

let tlaRewrite = null;
try {
    tlaRewrite = require('internal/repl/await').processTopLevelAwait;
} catch (e) {
    tlaRewrite = null;
}

/* The code to run and whether it yields a promise of {value}. */
function prepare(code) {
    if (/\bawait\b/.test(code)) {
        if (tlaRewrite) {
            let wrapped = null;
            try {
                wrapped = tlaRewrite(code);
            } catch (e) {
                wrapped = null;  /* a syntax error: the plain compile reports it */
            }
            if (wrapped !== null)
                return {code: wrapped, async: true};
        } else {
            try {
                new vm.Script(code);
            } catch (e) {
                if (/await is only valid/.test(e.message))
                    return {code: '(async () => {\n' + code + '\n})()', async: true, noValue: true};
            }
        }
    }
    return {code, async: false};
}

/* ------------------------------------------------------------------ interrupts */

let interruptPending = null;  /* reject() of the await being waited for */

process.on('SIGINT', () => {
    cancelInputs();
    if (interruptPending)
        interruptPending(interruptError());
});

function interruptError() {
    const e = new CtxError('Script execution was interrupted by `SIGINT`');
    e.code = 'ERR_SCRIPT_EXECUTION_INTERRUPTED';
    e.stack = e.name + ': ' + e.message;
    return e;
}

function withInterrupt(promise) {
    return new Promise((resolve, reject) => {
        interruptPending = reject;
        Promise.resolve(promise).then(resolve, reject);
    }).finally(() => {
        interruptPending = null;
    });
}

process.on('uncaughtException', (e) => {
    process.stderr.write('Uncaught ' + formatStack(e) + '\n');
});
process.on('unhandledRejection', (e) => {
    if (e && e.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED')
        return;  /* an input() nobody awaited, ended by the interrupt the user asked for */
    process.stderr.write('Uncaught (in promise) ' + formatStack(e) + '\n');
});

/* ------------------------------------------------------------------ errors */

function isErrorLike(e) {
    return e !== null && typeof e === 'object' && typeof e.stack === 'string' && 'message' in e;
}

/* The stack without the runner's and vm's frames. */
function formatStack(e) {
    if (!isErrorLike(e))
        return util.inspect(e);
    const out = [];
    for (const line of e.stack.split('\n')) {
        if (/^\s+at /.test(line) && /cellbox-runner|\(node:vm[:)]|^\s+at node:vm|new Script \(/.test(line))
            break;
        out.push(line);
    }
    while (out.length && /^\s+at .*node:internal\/(process\/task_queues|modules\/run_main)/.test(out[out.length - 1]))
        out.pop();
    return out.join('\n');
}

function errorContent(e) {
    let ename, evalue;
    if (isErrorLike(e)) {
        ename = e.name || (e.constructor && e.constructor.name) || 'Error';
        evalue = String(e.message);
    } else {
        ename = 'Uncaught';
        evalue = util.inspect(e);
    }
    const tb = isErrorLike(e) ? formatStack(e).split('\n') : [`Uncaught ${evalue}`];
    return {ename, evalue, traceback: tb};
}

function errorReply(content, silent) {
    if (!silent)
        publish('error', content);
    return Object.assign({status: 'error'}, content);
}

/* ------------------------------------------------------------------ requests */

function inspectValue(v) {
    return util.inspect(v, {colors: false, depth: 4, maxArrayLength: 100, breakLength: 80});
}

function userExpressions(exprs) {
    const out = {};
    for (const [k, src] of Object.entries(exprs || {})) {
        try {
            const v = vm.runInContext(String(src), ctx, {displayErrors: false});
            out[k] = {status: 'ok', data: {'text/plain': inspectValue(v)}, metadata: {}};
        } catch (e) {
            out[k] = Object.assign({status: 'error'}, errorContent(e));
        }
    }
    return out;
}

async function execute(req) {
    const filename = `In[${req.execution_count}]`;
    let code = String(req.code);
    if (!code.trim())
        return {status: 'ok', _not_stored: true};
    if (req.interrupted)  /* the interrupt came while the kernel started, before this cell */
        return errorReply(errorContent(interruptError()), req.silent);
    if (ts) {
        const r = tsTranspile(code, filename);
        if (r.errors.length) {
            const first = tsDiagText(r.errors[0], filename);
            const lines = code.split('\n');
            const tb = [];
            for (const d of r.errors) {
                const t = tsDiagText(d, filename);
                tb.push(`${t.where} - error ${t.msg}`);
                if (t.line !== undefined && lines[t.line] !== undefined)
                    tb.push('  ' + lines[t.line], '  ' + ' '.repeat(t.character) + '^');
            }
            return errorReply({ename: 'SyntaxError', evalue: first.msg, traceback: ['SyntaxError: ' + first.msg, ...tb]}, req.silent);
        }
        code = r.js;
    }
    const prep = prepare(redeclarable(code));
    let value;
    try {
        const script = new vm.Script(prep.code, {filename});
        noteDeclarations(code);
        value = script.runInContext(ctx, {breakOnSigint: true, displayErrors: false});
        if (prep.async) {
            value = await withInterrupt(value);
            if (prep.noValue)
                value = undefined;
            else if (value && typeof value === 'object' && Object.keys(value).length === 1 && 'value' in value)
                value = value.value;  /* the REPL's rewrite returns {value} */
        }
    } catch (e) {
        if (e && e.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED')
            cancelInputs();  /* stopped in synchronous code: its input()s end too */
        return errorReply(errorContent(e), req.silent);
    }
    const reply = {status: 'ok'};
    if (value !== undefined && !req.silent) {
        const text = inspectValue(value);
        publish('execute_result', {execution_count: req.execution_count, data: {'text/plain': text}, metadata: {}});
        reply._history_output = text;
    }
    if (req.user_expressions && Object.keys(req.user_expressions).length)
        reply.user_expressions = userExpressions(req.user_expressions);
    return reply;
}

const KEYWORDS = ['await', 'break', 'case', 'catch', 'class', 'const', 'continue', 'debugger', 'default',
    'delete', 'do', 'else', 'export', 'extends', 'false', 'finally', 'for', 'function', 'if', 'import',
    'in', 'instanceof', 'let', 'new', 'null', 'return', 'static', 'super', 'switch', 'this', 'throw',
    'true', 'try', 'typeof', 'undefined', 'var', 'void', 'while', 'with', 'yield', 'async', 'of'];
const TS_KEYWORDS = ['interface', 'type', 'enum', 'namespace', 'declare', 'readonly', 'keyof', 'as',
    'implements', 'private', 'public', 'protected', 'abstract', 'unknown', 'never', 'any', 'number',
    'string', 'boolean'];

/* Evaluates a dotted name (a.b.c) without running anything else. */
function lookup(expr) {
    if (!/^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$/.test(expr))
        return {ok: false};
    try {
        const parts = expr.split('.');
        let v = vm.runInContext(`typeof ${parts[0]} === 'undefined' ? undefined : ${parts[0]}`, ctx);
        for (const p of parts.slice(1)) {
            if (v === null || v === undefined)
                return {ok: false};
            v = v[p];
        }
        return {ok: true, value: v};
    } catch (e) {
        return {ok: false};
    }
}

function propertyNames(v) {
    const names = new Set();
    let o = (v !== null && typeof v !== 'object' && typeof v !== 'function') ? Object(v) : v;
    for (let depth = 0; o && depth < 20; depth++) {
        for (const k of Object.getOwnPropertyNames(o))
            if (k !== 'constructor' || depth === 0)
                names.add(k);
        o = Object.getPrototypeOf(o);
    }
    return [...names].filter(k => /^[A-Za-z_$][\w$]*$/.test(k));
}

function complete(req) {
    const code = String(req.code || '');
    const pos = Math.min(code.length, Math.max(0, req.cursor_pos | 0));
    const before = code.slice(0, pos);
    const m = /((?:[A-Za-z_$][\w$]*\.)*)([A-Za-z_$][\w$]*)?$/.exec(before);
    const objExpr = m[1] ? m[1].slice(0, -1) : '';
    const prefix = m[2] || '';
    let candidates;
    if (objExpr) {
        const r = lookup(objExpr);
        candidates = r.ok && r.value !== undefined && r.value !== null ? propertyNames(r.value) : [];
    } else {
        const names = new Set(Object.getOwnPropertyNames(ctx));
        for (const n of lexicalNames) {
            try {
                vm.runInContext(`typeof ${n}`, ctx);
                names.add(n);
            } catch (e) { /* never declared after all, or in its TDZ */ }
        }
        for (const k of Object.getOwnPropertyNames(globalThis))
            if (/^[A-Z]/.test(k) || ['parseInt', 'parseFloat', 'isNaN', 'isFinite', 'encodeURIComponent',
                'decodeURIComponent', 'encodeURI', 'decodeURI', 'globalThis'].includes(k))
                names.add(k);
        for (const k of KEYWORDS)
            names.add(k);
        if (ts)
            for (const k of TS_KEYWORDS)
                names.add(k);
        candidates = [...names];
    }
    const matches = candidates.filter(n => n.startsWith(prefix)).sort((a, b) => {
        const pa = a.startsWith('_'), pb = b.startsWith('_');
        return pa !== pb ? (pa ? 1 : -1) : (a < b ? -1 : a > b ? 1 : 0);
    });
    return {status: 'ok', matches, cursor_start: pos - prefix.length, cursor_end: pos, metadata: {}};
}

function signature(fn) {
    let src;
    try {
        src = Function.prototype.toString.call(fn);
    } catch (e) {
        return `${fn.name || 'anonymous'}(...)`;
    }
    if (/\{\s*\[native code\]\s*\}$/.test(src))
        return `${fn.name || 'anonymous'}(${Array.from({length: fn.length}, (_, i) => 'arg' + i).join(', ')})  [native]`;
    const m = /^[^(]*\(([^)]*)\)/.exec(src) || /^\s*(?:async\s+)?([A-Za-z_$][\w$]*)\s*=>/.exec(src);
    const params = m ? m[1].replace(/\s+/g, ' ').trim() : '';
    if (/^class\b/.test(src))
        return `class ${fn.name}`;
    return `${/^async/.test(src) ? 'async ' : ''}${fn.name || 'anonymous'}(${params})`;
}

function inspect(req) {
    const code = String(req.code || '');
    const pos = Math.min(code.length, Math.max(0, req.cursor_pos | 0));
    /* the dotted name under or just before the cursor */
    const left = /[\w$.]*$/.exec(code.slice(0, pos))[0];
    const right = /^[\w$]*/.exec(code.slice(pos))[0];
    const name = (left + right).replace(/^\.+|\.+$/g, '').replace(/\($/, '');
    const r = name ? lookup(name) : {ok: false};
    if (!r.ok || (r.value === undefined && !lexicalNames.has(name)))
        return {status: 'ok', found: false, data: {}, metadata: {}};
    const v = r.value;
    const lines = [];
    if (typeof v === 'function') {
        lines.push(`Signature: ${signature(v)}`);
        lines.push(`Type:      ${/^class\b/.test(Function.prototype.toString.call(v)) ? 'class' : 'function'}`);
        if (req.detail_level > 0)
            lines.push('Source:', Function.prototype.toString.call(v));
    } else {
        const type = v === null ? 'null' : Array.isArray(v) ? 'Array' :
            typeof v === 'object' ? (v.constructor && v.constructor.name) || 'Object' : typeof v;
        lines.push(`Type:      ${type}`);
        lines.push(`Value:     ${util.inspect(v, {depth: 1, breakLength: 100, maxArrayLength: 20})}`);
    }
    return {status: 'ok', found: true, data: {'text/plain': lines.join('\n')}, metadata: {}};
}

/* Bracket depth at the end of code (strings and comments skipped). */
function openDepth(code) {
    let depth = 0, i = 0;
    const n = code.length;
    while (i < n) {
        const c = code[i];
        if (c === '/' && code[i + 1] === '/') {
            while (i < n && code[i] !== '\n')
                i++;
        } else if (c === '/' && code[i + 1] === '*') {
            const j = code.indexOf('*/', i + 2);
            i = j < 0 ? n : j + 2;
            continue;
        } else if (c === '"' || c === "'" || c === '`') {
            i++;
            while (i < n && code[i] !== c) {
                if (code[i] === '\\')
                    i++;
                i++;
            }
        } else if ('([{'.includes(c)) {
            depth++;
        } else if (')]}'.includes(c)) {
            depth = Math.max(0, depth - 1);
        }
        i++;
    }
    return depth;
}

function isComplete(req) {
    const code = String(req.code || '');
    if (!code.trim())
        return {status: 'complete'};
    const incomplete = () => ({status: 'incomplete', indent: '    '.repeat(Math.max(1, openDepth(code)))});
    if (ts) {
        const r = tsTranspile(code, 'cell');
        if (!r.errors.length)
            return {status: 'complete'};
        const trimmed = code.replace(/\s+$/, '').length;
        return r.errors.some(d => d.start >= trimmed) ? incomplete() : {status: 'invalid'};
    }
    const tryCompile = (src) => {
        try {
            new vm.Script(src);
            return null;
        } catch (e) {
            return e;
        }
    };
    let e = tryCompile(code);
    if (e && /await is only valid|Unexpected reserved word/.test(e.message))
        e = tryCompile('(async () => {\n' + code + '\n})');
    if (!e)
        return {status: 'complete'};
    if (/Unexpected end of input|Unterminated template|missing \) after argument list$/.test(e.message) &&
        openDepth(code) > 0 || /Unexpected end of input|Unterminated template/.test(e.message))
        return incomplete();
    return {status: 'invalid'};
}

async function handle(req) {
    switch (req.op) {
    case 'execute': return execute(req);
    case 'complete': return complete(req);
    case 'inspect': return inspect(req);
    case 'is_complete': return isComplete(req);
    default: return {status: 'error', ename: 'ValueError', evalue: `unknown request ${req.op}`, traceback: []};
    }
}

/* ------------------------------------------------------------------ main loop */

const queue = [];
let busy = false;

async function pump() {
    if (busy)
        return;
    busy = true;
    while (queue.length) {
        const req = queue.shift();
        let content;
        try {
            content = await handle(req);
        } catch (e) {
            content = Object.assign({status: 'error'}, errorContent(e));
        }
        send({t: 'reply', content});
    }
    busy = false;
}

const requests = new net.Socket({fd: 3, readable: true, writable: false});
let pending = '';
requests.setEncoding('utf8');
requests.on('data', (chunk) => {
    pending += chunk;
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (!line.trim())
            continue;
        let req;
        try {
            req = JSON.parse(line);
        } catch (e) {
            send({t: 'reply', content: {status: 'error', ename: 'ValueError', evalue: 'bad request line', traceback: []}});
            continue;
        }
        if (req.op === 'input_reply')
            inputReply(req);  /* the cell waiting for it is the request being handled */
        else
            queue.push(req);
    }
    pump();
});
requests.on('end', () => process.exit(0));
requests.on('error', () => process.exit(0));

send({t: 'ready', node: process.versions.node, language: LANG,
      typescript: ts ? ts.version : null, error: LANG === 'typescript' && !ts ? tsError : null});
