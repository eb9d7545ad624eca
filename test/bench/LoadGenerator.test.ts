/**
 * The load generator end to end on loopback: against the bare node:tls responder over STARTTLS
 * and implicit TLS, with and without session resumption, and against a closed port (errors
 * counted by kind, through the `postern bench` command itself).
 */
import * as ChildProcess from "node:child_process"
import * as NodeFs from "node:fs"
import * as Net from "node:net"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Responder from "../../bench/tls-responder.ts"
import * as LoadGenerator from "../../src/bench/LoadGenerator.ts"
import * as LoadOptions from "../../src/bench/LoadOptions.ts"

const root = NodePath.resolve(import.meta.dirname, "../..")
const host = "127.0.0.1"
const servername = "bench.postern.test"

let directory = ""
let responder: Responder.Responder | undefined

beforeAll(async () => {
  directory = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "postern-bench-test-"))
  const cert = NodePath.join(directory, "cert.pem")
  const key = NodePath.join(directory, "key.pem")
  ChildProcess.execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
    "-keyout", key, "-out", cert, "-days", "2", "-subj", `/CN=${servername}`,
    "-addext", `subjectAltName=DNS:${servername}`
  ], { stdio: "ignore" })
  responder = await Responder.start({
    cert: NodeFs.readFileSync(cert, "utf8"),
    key: NodeFs.readFileSync(key, "utf8"),
    host,
    starttlsPort: 0,
    implicitPort: 0
  })
})

afterAll(async () => {
  await responder?.close()
  if (directory !== "") NodeFs.rmSync(directory, { recursive: true, force: true })
})

const options = (overrides: Partial<LoadOptions.LoadOptions> & Pick<LoadOptions.LoadOptions, "port">): LoadOptions.LoadOptions => ({
  ...LoadOptions.defaults,
  host,
  tls: "starttls",
  concurrency: 2,
  durationMs: 600,
  messagesPerConnection: 2,
  servername,
  threads: 1,
  ca: undefined,
  groups: undefined,
  ...overrides
})

const ports = () => {
  const r = responder
  if (r?.starttlsPort === undefined || r.implicitPort === undefined) throw new Error("responder not started")
  return { starttls: r.starttlsPort, implicit: r.implicitPort }
}

const closedPort = (): Promise<number> =>
  new Promise((resolve) => {
    const server = Net.createServer()
    server.listen(0, host, () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

describe("postern bench against the bare node:tls responder", () => {
  for (const tls of ["starttls", "implicit"] as const) {
    for (const resume of [false, true]) {
      it.live(`${tls}${resume ? " resuming sessions" : ""}: handshakes and messages, no errors`, () =>
        Effect.gen(function*() {
          const port = ports()[tls]
          const report = yield* LoadGenerator.run(options({ port, tls, resume, threads: resume ? 1 : 2 }))
          assert.deepStrictEqual(report.errors.byKind, {})
          assert.strictEqual(report.errors.total, 0)
          assert.isAbove(report.connections, 0)
          assert.strictEqual(report.connections, report.attempts)
          assert.strictEqual(report.handshakes.full + report.handshakes.resumed, report.connections)
          assert.isAbove(report.messages.count, 0)
          assert.isAbove(report.handshakes.latencyMs.p50, 0)
          assert.isAtLeast(report.handshakes.latencyMs.p99, report.handshakes.latencyMs.p50)
          assert.isAbove(report.messages.latencyMs.p50, 0)
          if (resume) {
            assert.isAbove(report.handshakes.resumed, 0)
            assert.isAbove(report.handshakes.resumedPerSec, 0)
          } else {
            assert.strictEqual(report.handshakes.resumed, 0)
            assert.isAbove(report.handshakes.fullPerSec, 0)
          }
        }))
    }
  }

  it.live("handshakes only (no message) over STARTTLS with TLS 1.2", () =>
    Effect.gen(function*() {
      const report = yield* LoadGenerator.run(
        options({ port: ports().starttls, messagesPerConnection: 0, minVersion: "TLSv1.2", maxVersion: "TLSv1.2" })
      )
      assert.strictEqual(report.errors.total, 0)
      assert.isAbove(report.handshakes.full, 0)
      assert.strictEqual(report.messages.count, 0)
    }))

  it.live("a plaintext client on the implicit TLS port times out waiting for the greeting", () =>
    Effect.gen(function*() {
      // The server waits for a ClientHello, the client for a 220: neither comes.
      const report = yield* LoadGenerator.run(options({ port: ports().implicit, tls: "none", durationMs: 300, timeoutMs: 200 }))
      assert.strictEqual(report.connections, 0)
      assert.isAbove(report.errors.byKind["timeout"] ?? 0, 0)
      assert.strictEqual(report.errors.total, report.errors.byKind["timeout"])
      assert.include(report.errors.samples["timeout"]?.[0] ?? "", "greeting")
    }))
})

describe("postern bench (the command) against a closed port", () => {
  it.live("counts connect errors by kind, reports JSON and exits 1", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(closedPort)
      const node = NodePath.join(root, "node_modules", ".bin", "node")
      const result = ChildProcess.spawnSync(
        NodeFs.existsSync(node) ? node : process.execPath,
        ["src/main.ts", "bench", "--target", `${host}:${port}`, "--concurrency", "2", "--duration", "0.5", "--threads", "1", "--json"],
        { cwd: root, encoding: "utf8", timeout: 15_000 }
      )
      assert.strictEqual(result.status, 1, result.stderr)
      const report = JSON.parse(result.stdout) as LoadGenerator.Report
      assert.strictEqual(report.connections, 0)
      assert.isAbove(report.errors.byKind["connect refused"] ?? 0, 0)
      assert.strictEqual(report.errors.total, report.errors.byKind["connect refused"])
      assert.strictEqual(report.attempts, report.errors.total)
    }))

  it.live("refuses a target without a port", () =>
    Effect.sync(() => {
      const node = NodePath.join(root, "node_modules", ".bin", "node")
      const result = ChildProcess.spawnSync(
        NodeFs.existsSync(node) ? node : process.execPath,
        ["src/main.ts", "bench", "--target", host],
        { cwd: root, encoding: "utf8", timeout: 15_000 }
      )
      assert.strictEqual(result.status, 2)
      assert.include(result.stderr, "--target must be HOST:PORT")
    }))
})
