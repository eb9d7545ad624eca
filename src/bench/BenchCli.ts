/**
 * `postern bench`: an SMTP load generator for any server (Postern, Postfix, ...), plaintext,
 * STARTTLS or implicit TLS. It prints a progress line on stderr every second and a summary at
 * the end (one JSON object on stdout with `--json`).
 *
 * The server's certificate is not verified unless `--ca FILE` is given: a benchmark usually
 * targets a server with a self-signed certificate, and verification is client work that would
 * be charged to the measurement.
 *
 * Exit status: 0 when the run had no error, 1 when any connection failed or none completed,
 * 2 for invalid options.
 */
import * as NodeOs from "node:os"
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import * as LoadGenerator from "./LoadGenerator.ts"
import * as LoadOptions from "./LoadOptions.ts"
import { setExitCode } from "../Cli.ts"

const fixed = (value: number, digits = 0) => value.toFixed(digits)

/** The progress line printed on stderr every interval. */
export const progressLine = (progress: LoadGenerator.Progress): string =>
  [
    `[${fixed(progress.seconds, 0).padStart(4)}s]`,
    `conn/s ${fixed(progress.connectionsPerSec)}`,
    `full hs/s ${fixed(progress.fullHandshakesPerSec)}`,
    `resumed hs/s ${fixed(progress.resumedHandshakesPerSec)}`,
    `msg/s ${fixed(progress.messagesPerSec)}`,
    `errors ${progress.errors}`
  ].join("  ")

const latency = (summary: { readonly count: number; readonly p50: number; readonly p99: number; readonly max: number }) =>
  summary.count === 0 ? "-" : `p50 ${summary.p50} ms, p99 ${summary.p99} ms, max ${summary.max} ms`

/** The human summary of a report. */
export const summary = (report: LoadGenerator.Report): string => {
  const lines = [
    `target ${report.target}, tls ${report.tls}${report.servername === null ? "" : ` (SNI ${report.servername})`}, ${
      report.verify ? "verified" : "not verified"
    }, ${report.minVersion === report.maxVersion ? report.minVersion : `${report.minVersion}-${report.maxVersion}`}${
      report.resume ? ", resuming sessions" : ""
    }`,
    `concurrency ${report.concurrency} on ${report.threads} thread(s), ${report.messagesPerConnection} message(s) of ${report.size} bytes per connection, ${report.elapsedSeconds} s`,
    ...(report.negotiated === null
      ? []
      : [`negotiated    ${report.negotiated.protocol} ${report.negotiated.cipher} ${report.negotiated.group}`]),
    `connections   ${report.connections} (${report.connectionsPerSec}/s), ${report.attempts} started`,
    `handshakes    full ${report.handshakes.full} (${report.handshakes.fullPerSec}/s), resumed ${report.handshakes.resumed} (${report.handshakes.resumedPerSec}/s); ${
      latency(report.handshakes.latencyMs)
    }`,
    `messages      ${report.messages.count} (${report.messages.perSec}/s); ${latency(report.messages.latencyMs)}`,
    `load CPU      ${report.clientCpuSeconds} s (${report.clientCpuCores} of ${report.threads} thread(s) busy)`,
    `errors        ${report.errors.total}`
  ]
  for (const [kind, count] of Object.entries(report.errors.byKind)) {
    const first = report.errors.samples[kind]?.[0]
    lines.push(`  ${kind}: ${count}${first === undefined ? "" : ` (e.g. ${first})`}`)
  }
  return lines.join("\n")
}

const versions = {
  any: ["TLSv1.2", "TLSv1.3"],
  "1.2": ["TLSv1.2", "TLSv1.2"],
  "1.3": ["TLSv1.3", "TLSv1.3"]
} as const

/** The `bench` subcommand. */
export const command = Command.make(
  "bench",
  {
    target: Flag.String("target").pipe(Flag.withDescription("Server to load, HOST:PORT or [IPv6]:PORT")),
    tls: Flag.Literals("tls", ["none", "starttls", "implicit"]).pipe(
      Flag.withDescription("none, STARTTLS after EHLO, or implicit TLS from the first byte (port 465 style)"),
      Flag.withDefault(LoadOptions.defaults.tls)
    ),
    concurrency: Flag.Int("concurrency").pipe(
      Flag.withDescription("Connections open at once"),
      Flag.withDefault(LoadOptions.defaults.concurrency)
    ),
    duration: Flag.Finite("duration").pipe(
      Flag.withDescription("Seconds during which connections are started"),
      Flag.withDefault(LoadOptions.defaults.durationMs / 1000)
    ),
    messagesPerConnection: Flag.Int("messages-per-connection").pipe(
      Flag.withDescription("Messages per connection; 0 for handshakes only (EHLO, STARTTLS, EHLO, QUIT)"),
      Flag.withDefault(LoadOptions.defaults.messagesPerConnection)
    ),
    size: Flag.Int("size").pipe(Flag.withDescription("Message size in bytes"), Flag.withDefault(LoadOptions.defaults.size)),
    servername: Flag.String("servername").pipe(
      Flag.withDescription("SNI name (default: the target host when it is a name; none for an address)"),
      Flag.optional
    ),
    threads: Flag.Int("threads").pipe(
      Flag.withDescription("Worker threads (default: the CPUs this process may run on)"),
      Flag.optional
    ),
    resume: Flag.Boolean("resume").pipe(
      Flag.withDescription("Resume TLS sessions from earlier connections (measures resumed handshakes)"),
      Flag.withDefault(false)
    ),
    json: Flag.Boolean("json").pipe(Flag.withDescription("Print the result as one JSON object on stdout"), Flag.withDefault(false)),
    from: Flag.String("from").pipe(Flag.withDescription("MAIL FROM address"), Flag.withDefault(LoadOptions.defaults.from)),
    to: Flag.String("to").pipe(Flag.withDescription("RCPT TO address"), Flag.withDefault(LoadOptions.defaults.to)),
    ehlo: Flag.String("ehlo").pipe(Flag.withDescription("EHLO name"), Flag.withDefault(LoadOptions.defaults.ehlo)),
    ca: Flag.FileText("ca").pipe(
      Flag.withDescription("Verify the server's certificate (and name) against the CAs in this PEM file"),
      Flag.optional
    ),
    insecure: Flag.Boolean("insecure").pipe(
      Flag.withDescription("Do not verify the server's certificate (the default without --ca)"),
      Flag.withDefault(false)
    ),
    tlsVersion: Flag.Literals("tls-version", ["any", "1.2", "1.3"]).pipe(
      Flag.withDescription("TLS version to offer: 1.2, 1.3 or any of both"),
      Flag.withDefault("any")
    ),
    groups: Flag.String("groups").pipe(
      Flag.withDescription("Key exchange groups to offer, e.g. X25519:P-256 (default: Node's, which puts X25519MLKEM768 first)"),
      Flag.optional
    ),
    timeout: Flag.Finite("timeout").pipe(
      Flag.withDescription("Seconds without progress after which a connection fails"),
      Flag.withDefault(LoadOptions.defaults.timeoutMs / 1000)
    )
  },
  Effect.fnUntraced(function*(flags) {
    const usageError = (message: string) =>
      Effect.andThen(Console.error(`postern bench: ${message}`), setExitCode(2))
    const target = LoadOptions.parseTarget(flags.target)
    if (target === undefined) return yield* usageError(`--target must be HOST:PORT, got "${flags.target}"`)
    const ca = Option.getOrUndefined(flags.ca)
    if (ca !== undefined && flags.insecure) return yield* usageError("--ca and --insecure exclude each other")
    const [minVersion, maxVersion] = versions[flags.tlsVersion]
    const options: LoadOptions.LoadOptions = {
      host: target.host,
      port: target.port,
      tls: flags.tls,
      concurrency: flags.concurrency,
      durationMs: flags.duration * 1000,
      messagesPerConnection: flags.messagesPerConnection,
      size: flags.size,
      servername: Option.getOrElse(flags.servername, () => LoadOptions.defaultServername(target.host)),
      threads: Option.getOrElse(flags.threads, () => NodeOs.availableParallelism()),
      resume: flags.resume,
      from: flags.from,
      to: flags.to,
      ehlo: flags.ehlo,
      ca,
      minVersion,
      maxVersion,
      groups: Option.getOrUndefined(flags.groups),
      timeoutMs: flags.timeout * 1000,
      errorBackoffMs: LoadOptions.defaults.errorBackoffMs,
      progressIntervalMs: LoadOptions.defaults.progressIntervalMs
    }
    const problems = LoadOptions.problems(options)
    if (problems.length > 0) return yield* usageError(problems.join("; "))
    const result = yield* Effect.result(
      LoadGenerator.run(options, (progress) => process.stderr.write(`${progressLine(progress)}\n`))
    )
    if (result._tag === "Failure") {
      yield* Console.error(`postern bench: ${result.failure.message}`)
      return yield* setExitCode(1)
    }
    const report = result.success
    yield* flags.json ? Console.log(JSON.stringify(report)) : Console.log(summary(report))
    if (report.errors.total > 0 || report.connections === 0) yield* setExitCode(1)
  })
).pipe(Command.withDescription("Load an SMTP server (plaintext, STARTTLS or implicit TLS) and report its throughput"))
