/**
 * The TLS scenarios of `npm run bench`: full STARTTLS and implicit TLS handshakes per second,
 * messages per second over a fresh TLS connection each, and resumed handshakes, at concurrency
 * 20, with an ECDSA P-256 and an RSA-2048 certificate, TLS 1.3 and 1.2. Each runs against the
 * bare node:tls responder (bench/tls-responder.ts, Node's own ceiling) and against Postern
 * (bench/bench-tls.config.ts), the servers on one CPU and `postern bench` on the other.
 *
 * The figure that counts is the server's CPU time per connection (a full handshake and the
 * SMTP around it), read from /proc over the server's process tree before and after each load
 * run: one client core cannot drive a server core to saturation, so handshakes per second
 * mostly measure the client. Next to it: the OpenSSL bound (one signature and one X25519 key
 * exchange per handshake, from `openssl speed`), and Postern's CPU as a ratio of the responder's.
 *
 * Called by bench/run.ts; also runs alone: `node bench/tls.ts [--quick] [--only ID] [--duration S]
 * [--no-pin] [--ceiling-only] [--workers N]`.
 */
import * as ChildProcess from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import type * as LoadGenerator from "../src/bench/LoadGenerator.ts"
import { defaultProtocol } from "../src/tls/TlsSettings.ts"
import * as Rounds from "./Rounds.ts"
import * as Smtp from "./Smtp.ts"
import { errorMessage, round } from "./Smtp.ts"

type Json = string | number | boolean | null | undefined | ReadonlyArray<Json> | { readonly [key: string]: Json }

/** What the caller (bench/run.ts) provides. */
export interface TlsBenchInput {
  readonly quick: boolean
  /** Scenario names asked for (`tls`, an id, or an id prefix such as `tls-starttls`); empty: all. */
  readonly only: ReadonlyArray<string>
  /** Only the bare responder; Postern's side is "skipped". */
  readonly ceilingOnly: boolean
  readonly pinning: Smtp.Pinning | undefined
  /** The node binary for the servers and the load generator. */
  readonly node: string
  readonly root: string
  readonly outputDirectory: string
  readonly startupTimeoutMs: number
  readonly workers: string
  readonly keepState: boolean
  /** Seconds of each load run (default 5, quick 1). */
  readonly durationSeconds?: number
  readonly emit: (line: { readonly [key: string]: Json }, human: string) => void
}

/** The kind name of these scenarios in `--only`. */
export const kind = "tls"

/** Load, timing and server settings. */
const settings = {
  host: "127.0.0.1",
  servername: "bench.postern.test",
  concurrency: 20,
  messageBytes: 1024,
  durationSeconds: { full: 5, quick: 1 },
  // Rounds of both servers, alternating which goes first; the median round is reported.
  rounds: { full: 3, quick: 1 },
  warmupSeconds: { full: 1, quick: 0.5 },
  // A load run that has not ended this long after its duration is killed.
  loadGraceMs: 30_000,
  probeIntervalMs: 100,
  stopGraceMs: 10_000,
  certificateDays: 2
} as const

type Mode = "starttls" | "implicit"
type Certificate = "ecdsa" | "rsa"
type Version = "tls13" | "tls12"
type What = "handshake" | "message" | "resumed"

interface Scenario {
  readonly id: string
  readonly mode: Mode
  readonly certificate: Certificate
  readonly version: Version
  readonly what: What
}

const modes: ReadonlyArray<Mode> = ["starttls", "implicit"]
const certificates: ReadonlyArray<Certificate> = ["ecdsa", "rsa"]
const versions: ReadonlyArray<Version> = ["tls13", "tls12"]

const versionName = { tls13: "TLSv1.3", tls12: "TLSv1.2" } as const
const versionFlag = { tls13: "1.3", tls12: "1.2" } as const
const certificateName = { ecdsa: "ECDSA P-256", rsa: "RSA-2048" } as const

/**
 * Every scenario. Resumed handshakes run with the ECDSA certificate only: a resumed handshake
 * sends no certificate and makes no signature, so the key type does not change it.
 */
export const all: ReadonlyArray<Scenario> = certificates.flatMap((certificate) =>
  modes.flatMap((mode) =>
    versions.flatMap((version) =>
      (certificate === "ecdsa" ? (["handshake", "message", "resumed"] as const) : (["handshake", "message"] as const))
        .map((what): Scenario => ({ id: `tls-${mode}-${certificate}-${version}-${what}`, mode, certificate, version, what }))
    )
  )
)

const matches = (name: string, scenario: Scenario) =>
  name === kind || name === scenario.id || scenario.id.startsWith(`${name}-`)

/** Whether `--only <name>` names some TLS scenario (the kind, an id or an id prefix). */
export const knows = (name: string): boolean => all.some((scenario) => matches(name, scenario))

/** The scenarios `only` selects (all when it is empty). */
export const selected = (only: ReadonlyArray<string>): Array<Scenario> =>
  only.length === 0 ? [...all] : all.filter((scenario) => only.some((name) => matches(name, scenario)))

// ---------------------------------------------------------------------------------------------
// CPU time from /proc

const readProc = (path: string): string | undefined => {
  try {
    return NodeFs.readFileSync(path, "utf8")
  } catch {
    return undefined
  }
}

/** utime, stime, cutime, cstime of a process in clock ticks (fields 14-17 of /proc/<pid>/stat). */
const statTimes = (pid: number | "self"): readonly [number, number, number, number] => {
  const stat = readProc(`/proc/${pid}/stat`)
  if (stat === undefined) return [0, 0, 0, 0]
  // Fields after the command name (which may hold spaces) start at the state, field 3.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  const at = (field: number) => Number(fields[field - 3] ?? 0)
  return [at(14), at(15), at(16), at(17)]
}

let ticksPerSecond: number | undefined

const clockTicks = (): number => {
  if (ticksPerSecond === undefined) {
    const getconf = ChildProcess.spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" })
    const value = Number(getconf.stdout?.trim())
    ticksPerSecond = getconf.status === 0 && value > 0 ? value : 100
  }
  return ticksPerSecond
}

/**
 * CPU seconds of a server: every process of its tree (threads included, /proc/<pid>/stat sums
 * them), plus what its children that already exited left in its cutime/cstime.
 */
export const serverCpuSeconds = (pid: number): number => {
  let ticks = 0
  for (const member of Smtp.processTree(pid)) {
    const [utime, stime, cutime, cstime] = statTimes(member)
    ticks += utime + stime + cutime + cstime
  }
  return ticks / clockTicks()
}

// ---------------------------------------------------------------------------------------------
// OpenSSL's bound

/** Operations per second `openssl speed` measured, and the milliseconds they give per handshake. */
export interface OpensslBound {
  readonly ecdsaP256SignPerSec: number
  readonly rsa2048SignPerSec: number
  readonly x25519PerSec: number
  /** One signature and one key exchange. */
  readonly ecdsaMs: number
  readonly rsaMs: number
}

/** Parses the output of `openssl speed ecdsap256 ecdhx25519 rsa2048`. */
export const parseSpeed = (output: string): OpensslBound | undefined => {
  const ecdsa = /^\s*256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)/m.exec(output)
  const x25519 = /^\s*253 bits ecdh \(X25519\)\s+\S+\s+([\d.]+)/m.exec(output)
  const rsa = /^\s*rsa\s+2048 bits\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)/m.exec(output)
  const ecdsaSign = Number(ecdsa?.[1])
  const rsaSign = Number(rsa?.[1])
  const kex = Number(x25519?.[1])
  if (!(ecdsaSign > 0 && rsaSign > 0 && kex > 0)) return undefined
  return {
    ecdsaP256SignPerSec: ecdsaSign,
    rsa2048SignPerSec: rsaSign,
    x25519PerSec: kex,
    ecdsaMs: 1000 / ecdsaSign + 1000 / kex,
    rsaMs: 1000 / rsaSign + 1000 / kex
  }
}

const measureBound = async (
  openssl: string,
  pinning: Smtp.Pinning | undefined
): Promise<OpensslBound | string> => {
  const [command, args] = Smtp.onCpu(pinning, pinning?.serverCpu ?? 0, openssl, [
    "speed",
    "-seconds",
    "1",
    "ecdsap256",
    "ecdhx25519",
    "rsa2048"
  ])
  const child = Smtp.spawnTracked(command, args, { stdio: ["ignore", "pipe", "ignore"] })
  let output = ""
  child.stdout?.setEncoding("utf8")
  child.stdout?.on("data", (chunk: string) => {
    output += chunk
  })
  await Smtp.exited(child)
  return parseSpeed(output) ?? `could not read \`openssl speed\` output: ${output.trim().slice(-300) || "none"}`
}

// ---------------------------------------------------------------------------------------------
// Certificates and servers

interface CertificateFiles {
  readonly cert: string
  readonly key: string
}

const makeCertificate = (openssl: string, directory: string, type: Certificate): CertificateFiles => {
  const cert = NodePath.join(directory, `${type}-cert.pem`)
  const key = NodePath.join(directory, `${type}-key.pem`)
  const keyArgs = type === "ecdsa" ? ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] : ["-newkey", "rsa:2048"]
  const result = ChildProcess.spawnSync(openssl, [
    "req",
    "-x509",
    ...keyArgs,
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    String(settings.certificateDays),
    "-subj",
    `/CN=${settings.servername}`,
    "-addext",
    `subjectAltName=DNS:${settings.servername}`
  ], { encoding: "utf8" })
  if (result.status !== 0) {
    throw new Smtp.BenchError({ reason: "Limits", message: `openssl req failed: ${result.stderr?.trim() ?? result.error?.message}` })
  }
  return { cert, key }
}

/** A server listening with STARTTLS on one port and implicit TLS on another. */
interface TlsServer {
  readonly server: Smtp.RunningServer
  readonly starttlsPort: number
  readonly implicitPort: number
  readonly cleanup: () => void
}

/** The STARTTLS and implicit TLS ports of a server: never the same one. */
const twoPorts = async (): Promise<readonly [number, number]> => {
  const [starttls, implicit] = await Smtp.freePorts(settings.host, 2)
  if (starttls === undefined || implicit === undefined) throw new Error("no port assigned")
  return [starttls, implicit]
}

const startResponder = async (input: TlsBenchInput, files: CertificateFiles, label: string): Promise<TlsServer> => {
  const [starttlsPort, implicitPort] = await twoPorts()
  const [command, args] = Smtp.onCpu(input.pinning, input.pinning?.serverCpu ?? 0, input.node, [
    "bench/tls-responder.ts",
    "--cert",
    files.cert,
    "--key",
    files.key,
    "--host",
    settings.host,
    "--starttls-port",
    String(starttlsPort),
    "--implicit-port",
    String(implicitPort)
  ])
  const server = await Smtp.startServer({
    command,
    args,
    cwd: input.root,
    env: process.env,
    host: settings.host,
    port: starttlsPort,
    logFile: NodePath.join(input.outputDirectory, `tls-responder-${label}.log`),
    startupTimeoutMs: input.startupTimeoutMs,
    probeIntervalMs: settings.probeIntervalMs,
    stopGraceMs: settings.stopGraceMs
  })
  return { server, starttlsPort, implicitPort, cleanup: () => undefined }
}

const startPostern = async (input: TlsBenchInput, files: CertificateFiles, label: string): Promise<TlsServer> => {
  const [starttlsPort, implicitPort] = await twoPorts()
  const stateDirectory = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "postern-bench-tls-"))
  const cleanup = () => {
    if (input.keepState) process.stderr.write(`  state kept in ${stateDirectory}\n`)
    else NodeFs.rmSync(stateDirectory, { recursive: true, force: true, maxRetries: 3 })
  }
  const [command, args] = Smtp.onCpu(input.pinning, input.pinning?.serverCpu ?? 0, input.node, [
    "src/main.ts",
    "serve",
    "--config",
    "bench/bench-tls.config.ts"
  ])
  try {
    const server = await Smtp.startServer({
      command,
      args,
      cwd: input.root,
      env: {
        ...process.env,
        POSTERN_BENCH_PORT: String(starttlsPort),
        POSTERN_BENCH_IMPLICIT_PORT: String(implicitPort),
        POSTERN_BENCH_TLS_CERT: files.cert,
        POSTERN_BENCH_TLS_KEY: files.key,
        POSTERN_BENCH_STATE: stateDirectory,
        POSTERN_BENCH_WORKERS: input.workers
      },
      host: settings.host,
      port: starttlsPort,
      logFile: NodePath.join(input.outputDirectory, `postern-tls-${label}.log`),
      startupTimeoutMs: input.startupTimeoutMs,
      probeIntervalMs: settings.probeIntervalMs,
      stopGraceMs: settings.stopGraceMs
    })
    return { server, starttlsPort, implicitPort, cleanup }
  } catch (error) {
    cleanup()
    throw error
  }
}

const stopServer = async (server: TlsServer) => {
  await Smtp.stop(server.server.child, settings.stopGraceMs)
  server.cleanup()
}

// ---------------------------------------------------------------------------------------------
// Load runs

interface LoadRun {
  readonly report: LoadGenerator.Report
  readonly serverCpuSeconds: number
}

const load = async (
  input: TlsBenchInput,
  server: TlsServer,
  scenario: Pick<Scenario, "mode" | "version" | "what">,
  durationSeconds: number
): Promise<LoadRun> => {
  const port = scenario.mode === "starttls" ? server.starttlsPort : server.implicitPort
  const [command, args] = Smtp.onCpu(input.pinning, input.pinning?.loadCpu ?? 0, input.node, [
    "src/main.ts",
    "bench",
    "--target",
    `${settings.host}:${port}`,
    "--tls",
    scenario.mode,
    "--servername",
    settings.servername,
    "--concurrency",
    String(settings.concurrency),
    "--duration",
    String(durationSeconds),
    "--messages-per-connection",
    scenario.what === "message" ? "1" : "0",
    "--size",
    String(settings.messageBytes),
    "--tls-version",
    versionFlag[scenario.version],
    // Postern's default groups: the client makes no key share the servers would not use.
    "--groups",
    defaultProtocol.groups,
    ...(scenario.what === "resumed" ? ["--resume"] : []),
    "--json"
  ])
  const serverBefore = serverCpuSeconds(server.server.pid)
  const child = Smtp.spawnTracked(command, args, { cwd: input.root, stdio: ["ignore", "pipe", "pipe"] })
  let stdout = ""
  let stderr = ""
  child.stdout?.setEncoding("utf8")
  child.stdout?.on("data", (chunk: string) => {
    stdout += chunk
  })
  child.stderr?.setEncoding("utf8")
  child.stderr?.on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-2000)
  })
  const timer = setTimeout(() => void Smtp.stop(child, 0), durationSeconds * 1000 + settings.loadGraceMs)
  await Smtp.exited(child)
  clearTimeout(timer)
  const serverAfter = serverCpuSeconds(server.server.pid)
  const gone = server.server.child.exitCode ?? server.server.child.signalCode
  if (gone !== null) {
    throw new Smtp.BenchError({ reason: "ServerExited", message: `the server exited (${gone}) during the run` })
  }
  const line = stdout.split("\n").find((l) => l.startsWith("{"))
  if (line === undefined) {
    throw new Smtp.BenchError({
      reason: "LoadFailed",
      message: `postern bench exited with ${child.exitCode ?? child.signalCode} and no report: ${
        stderr.trim().split("\n").slice(-3).join(" / ") || "no output"
      }`
    })
  }
  if (serverAfter < serverBefore) {
    throw new Smtp.BenchError({
      reason: "ServerExited",
      message: "the server's CPU time went down during the run: one of its processes exited"
    })
  }
  return {
    report: JSON.parse(line) as LoadGenerator.Report,
    serverCpuSeconds: serverAfter - serverBefore
  }
}

/** One target's figures for a scenario. */
const figures = (run: LoadRun, what: What, boundMs: number | undefined): { readonly [key: string]: Json } => {
  const r = run.report
  const handshakes = r.handshakes.full + r.handshakes.resumed
  const cpuMs = run.serverCpuSeconds * 1000
  const perHandshake = handshakes > 0 ? cpuMs / handshakes : null
  const kinds = Object.entries(r.errors.byKind).map(([k, n]) => `${k}: ${n}`).join(", ")
  const firstSample = Object.values(r.errors.samples)[0]?.[0]
  return {
    negotiated: r.negotiated === null ? null : `${r.negotiated.protocol} ${r.negotiated.cipher} ${r.negotiated.group}`,
    seconds: r.elapsedSeconds,
    connections: r.connections,
    connectionsPerSec: r.connectionsPerSec,
    fullHandshakes: r.handshakes.full,
    resumedHandshakes: r.handshakes.resumed,
    handshakesPerSec: r.handshakes.fullPerSec,
    resumedPerSec: r.handshakes.resumedPerSec,
    messages: r.messages.count,
    msgsPerSec: r.messages.perSec,
    handshakeP50Ms: r.handshakes.latencyMs.p50,
    handshakeP99Ms: r.handshakes.latencyMs.p99,
    ...(what === "message" ? { messageP50Ms: r.messages.latencyMs.p50, messageP99Ms: r.messages.latencyMs.p99 } : {}),
    serverCpuSeconds: round(run.serverCpuSeconds, 2),
    serverCpuShare: r.elapsedSeconds > 0 ? round(run.serverCpuSeconds / r.elapsedSeconds, 3) : null,
    serverCpuMsPerHandshake: perHandshake === null ? null : round(perHandshake, 4),
    ...(what === "message" && r.messages.count > 0 ? { serverCpuMsPerMessage: round(cpuMs / r.messages.count, 4) } : {}),
    clientCpuCores: r.clientCpuCores,
    clientCpuMsPerHandshake: handshakes > 0 ? round((r.clientCpuSeconds * 1000) / handshakes, 4) : null,
    ...(what !== "resumed" && boundMs !== undefined && perHandshake !== null
      ? { opensslBoundFraction: round(boundMs / perHandshake, 4) }
      : {}),
    errors: r.errors.total,
    ...(r.errors.total > 0 || r.connections === 0
      ? {
        error: r.connections === 0 && r.errors.total === 0
          ? "no connection completed"
          : `${r.errors.total} failed connections (${kinds})${firstSample === undefined ? "" : `; e.g. ${firstSample}`}`
      }
      : {})
  }
}

const describeTarget = (name: string, result: { readonly [key: string]: Json }, what: What): string => {
  if ("skipped" in result) return `${name} skipped`
  if ("error" in result && result["connections"] === undefined) return `${name} error: ${String(result["error"])}`
  const rate = what === "message"
    ? `${result["msgsPerSec"]} msg/s`
    : what === "resumed"
    ? `${result["resumedPerSec"]} resumed/s`
    : `${result["handshakesPerSec"]} hs/s`
  const cpu = result["serverCpuMsPerHandshake"]
  const problem = "error" in result ? ` (ERROR: ${String(result["error"])})` : ""
  return `${name} ${rate}, ${cpu === null ? "-" : `${cpu} ms`} server CPU per connection (${
    Math.round(Number(result["serverCpuShare"] ?? 0) * 100)
  }% of a core)${problem}`
}

// ---------------------------------------------------------------------------------------------
// Runner

/** One round's figures for the two servers. */
type MeasuredPair = Rounds.Pair<{ readonly [key: string]: Json }>

interface Targets {
  ceiling: TlsServer | string
  postern: TlsServer | string
}

/** Runs the selected TLS scenarios, emitting one line each (and one for the OpenSSL bound). */
export const run = async (input: TlsBenchInput): Promise<void> => {
  const scenarios = selected(input.only)
  if (scenarios.length === 0) return
  const durationSeconds = input.durationSeconds ?? (input.quick ? settings.durationSeconds.quick : settings.durationSeconds.full)
  const warmupSeconds = input.quick ? settings.warmupSeconds.quick : settings.warmupSeconds.full
  const header = { scenario: kind, quick: input.quick, pinned: input.pinning !== undefined }
  const openssl = Smtp.which("openssl")
  if (openssl === undefined) {
    for (const scenario of scenarios) {
      input.emit({ ...header, id: scenario.id, skipped: "openssl not installed" }, `${scenario.id}: skipped, openssl not installed`)
    }
    return
  }
  NodeFs.mkdirSync(input.outputDirectory, { recursive: true })

  const bound = await measureBound(openssl, input.pinning)
  if (typeof bound === "string") {
    input.emit({ ...header, id: "tls-openssl-bound", error: bound }, `tls OpenSSL bound: error: ${bound}`)
  } else {
    input.emit(
      {
        ...header,
        id: "tls-openssl-bound",
        ecdsaP256SignPerSec: bound.ecdsaP256SignPerSec,
        rsa2048SignPerSec: bound.rsa2048SignPerSec,
        x25519PerSec: bound.x25519PerSec,
        ecdsaMsPerHandshake: round(bound.ecdsaMs, 4),
        rsaMsPerHandshake: round(bound.rsaMs, 4)
      },
      `tls OpenSSL bound (one signature + one X25519): ECDSA P-256 ${round(bound.ecdsaMs, 4)} ms, RSA-2048 ${
        round(bound.rsaMs, 4)
      } ms per handshake`
    )
  }

  const directory = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "postern-bench-certs-"))
  try {
    for (const certificate of certificates) {
      const mine = scenarios.filter((s) => s.certificate === certificate)
      if (mine.length === 0) continue
      let files: CertificateFiles
      try {
        files = makeCertificate(openssl, directory, certificate)
      } catch (error) {
        for (const s of mine) input.emit({ ...header, id: s.id, error: errorMessage(error) }, `${s.id}: error: ${errorMessage(error)}`)
        continue
      }
      const targets: Targets = { ceiling: "not started", postern: input.ceilingOnly ? "--ceiling-only" : "not started" }
      try {
        try {
          targets.ceiling = await startResponder(input, files, certificate)
        } catch (error) {
          targets.ceiling = errorMessage(error)
        }
        if (!input.ceilingOnly) {
          try {
            targets.postern = await startPostern(input, files, certificate)
          } catch (error) {
            targets.postern = errorMessage(error)
          }
        }
        // The first connections of a fresh server pay for compiling its code: not per handshake.
        for (const server of [targets.ceiling, targets.postern]) {
          if (typeof server === "string") continue
          for (const mode of modes) {
            await load(input, server, { mode, version: "tls13", what: "message" }, warmupSeconds).catch(() => undefined)
          }
        }
        for (const scenario of mine) await runScenario(input, header, scenario, targets, durationSeconds, bound)
      } finally {
        for (const server of [targets.ceiling, targets.postern]) {
          if (typeof server !== "string") await stopServer(server)
        }
      }
    }
  } finally {
    NodeFs.rmSync(directory, { recursive: true, force: true })
  }
}

const runScenario = async (
  input: TlsBenchInput,
  header: { readonly [key: string]: Json },
  scenario: Scenario,
  targets: Targets,
  durationSeconds: number,
  bound: OpensslBound | string
) => {
  const boundMs = typeof bound === "string" ? undefined : scenario.certificate === "ecdsa" ? bound.ecdsaMs : bound.rsaMs
  const measure = async (server: TlsServer | string, skippedReason: string | undefined): Promise<{ readonly [key: string]: Json }> => {
    if (typeof server === "string") return server === skippedReason ? { skipped: server } : { error: `not started: ${server}` }
    try {
      return figures(await load(input, server, scenario, durationSeconds), scenario.what, boundMs)
    } catch (error) {
      return { error: errorMessage(error) }
    }
  }
  const rateKey = scenario.what === "message" ? "msgsPerSec" : scenario.what === "resumed" ? "resumedPerSec" : "handshakesPerSec"
  const ratioOf = (pair: MeasuredPair, key: string) => {
    const a = pair.postern[key]
    const b = pair.ceiling[key]
    return typeof a === "number" && typeof b === "number" && b > 0 && !("error" in pair.postern) &&
        !("error" in pair.ceiling)
      ? round(a / b, 3)
      : null
  }
  // Rounds compare the two servers: with one of them missing, one run of the other says it all.
  const comparable = typeof targets.ceiling !== "string" && typeof targets.postern !== "string"
  // Without a ratio in any round (a failure, or --ceiling-only), `chosen` is the first round: it says why.
  const { chosen, rounds, summary } = await Rounds.alternate({
    count: input.quick || !comparable ? settings.rounds.quick : settings.rounds.full,
    ceiling: () => measure(targets.ceiling, undefined),
    postern: () => measure(targets.postern, "--ceiling-only"),
    ratio: (pair) => ratioOf(pair, "serverCpuMsPerHandshake") ?? Number.NaN,
    worse: "higher"
  })
  const { ceiling, postern } = chosen.value
  const ratio = ratioOf(chosen.value, rateKey)
  const cpuRatio = Number.isFinite(chosen.ratio) ? chosen.ratio : null
  const title = `tls ${scenario.mode} ${certificateName[scenario.certificate]} ${versionName[scenario.version]} ${
    scenario.what === "handshake" ? "full handshakes" : scenario.what === "message" ? "a message per connection" : "resumed handshakes"
  }`
  const spread = Rounds.spread(summary)
  input.emit(
    {
      ...header,
      id: scenario.id,
      mode: scenario.mode,
      certificate: scenario.certificate,
      version: versionName[scenario.version],
      what: scenario.what,
      concurrency: settings.concurrency,
      messageBytes: scenario.what === "message" ? settings.messageBytes : 0,
      durationSeconds,
      opensslBoundMs: boundMs === undefined ? null : round(boundMs, 4),
      ceiling,
      postern,
      ratio,
      cpuRatio,
      rounds: rounds.map(({ ratio: roundRatio, value }) => ({
        ceilingCpuMs: value.ceiling["serverCpuMsPerHandshake"] ?? null,
        posternCpuMs: value.postern["serverCpuMsPerHandshake"] ?? null,
        cpuRatio: Number.isFinite(roundRatio) ? roundRatio : null,
        ...Rounds.errors(value.ceiling, value.postern)
      }))
    },
    `${title}: ${describeTarget("responder", ceiling, scenario.what)}; ${describeTarget("postern", postern, scenario.what)}${
      cpuRatio === null ? "" : `; postern CPU ${Math.round(cpuRatio * 100)}% of the responder's${spread === undefined ? "" : ` (${spread})`}`
    }`
  )
}

// ---------------------------------------------------------------------------------------------
// Standalone

const main = async () => {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string", multiple: true, default: [] },
      duration: { type: "string" },
      "no-pin": { type: "boolean", default: false },
      "ceiling-only": { type: "boolean", default: false },
      "startup-timeout": { type: "string" },
      workers: { type: "string" },
      "keep-state": { type: "boolean", default: false }
    },
    strict: true
  })
  const only = values.only.flatMap((item) => item.split(",")).map((item) => item.trim()).filter((item) => item !== "")
  const unknown = only.filter((name) => !knows(name))
  if (unknown.length > 0) {
    process.stderr.write(`--only: unknown TLS scenario ${unknown.join(", ")}; known: tls, ${all.map((s) => s.id).join(", ")}\n`)
    process.exit(2)
  }
  Smtp.installCleanup()
  const root = NodePath.resolve(import.meta.dirname, "..")
  const localNode = NodePath.join(root, "node_modules", ".bin", "node")
  let failures = 0
  const duration = values.duration === undefined ? undefined : Number(values.duration)
  await run({
    quick: values.quick,
    only,
    ceilingOnly: values["ceiling-only"],
    pinning: values["no-pin"] ? undefined : Smtp.detectPinning(0, 1),
    node: NodeFs.existsSync(localNode) ? localNode : process.execPath,
    root,
    outputDirectory: NodePath.join(root, ".bench-out"),
    startupTimeoutMs: Number(values["startup-timeout"] ?? "15") * 1000,
    workers: values.workers ?? process.env["POSTERN_BENCH_WORKERS"] ?? "1",
    keepState: values["keep-state"],
    ...(duration !== undefined && duration > 0 ? { durationSeconds: duration } : {}),
    emit: (line, human) => {
      if ("error" in line || Object.values(line).some((v) => typeof v === "object" && v !== null && "error" in v)) failures += 1
      process.stdout.write(`${JSON.stringify(line)}\n`)
      process.stderr.write(`${human}\n`)
    }
  })
  process.exitCode = failures > 0 ? 1 : 0
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) await main()
