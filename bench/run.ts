/**
 * `npm run bench`: SMTP throughput, maildir delivery and idle-connection memory, Postern against
 * Postfix's smtp-sink as the ceiling, and TLS handshakes against a bare node:tls responder
 * (tls.ts). One JSON line per scenario on stdout, a human summary on stderr. See
 * bench/README.md.
 *
 * Options: --quick, --only <scenario or id>[,...], --ceiling-only, --no-pin, --messages <n>,
 * --idle-connections <n>, --time-limit <s>, --startup-timeout <s>, --workers <n|auto>,
 * --keep-state, --help.
 */
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { parseArgs } from "node:util"
import * as PolicyBench from "./policy.ts"
import * as Rounds from "./Rounds.ts"
import * as Smtp from "./Smtp.ts"
import { errorMessage, round } from "./Smtp.ts"
import * as Tls from "./tls.ts"

const root = NodePath.resolve(import.meta.dirname, "..")
const host = "127.0.0.1"
const outputDirectory = NodePath.join(root, ".bench-out")

const usage = `usage: npm run bench -- [options]
  --quick                  small counts (CI smoke): a few hundred messages, 1,000 idle connections
  --only <names>           scenarios to run, by kind (throughput, maildir, idle, tls) or id
                           (e.g. throughput-c20-m10, tls-starttls-ecdsa-tls13-handshake, or an
                           id prefix such as tls-implicit); repeat or separate with commas
  --ceiling-only           run only the ceilings (smtp-sink, the TLS responder); skip Postern
  --no-pin                 do not pin the server and the load generator to CPUs with taskset
  --messages <n>           messages per throughput/maildir run instead of the defaults
  --warmup <n>             messages sent to each server before a throughput run is timed
                           (default 15000, quick 0): the figures are for a warm server
  --idle-connections <n>   idle connections to hold (default 10000, quick 1000)
  --time-limit <s>         hard limit for one load run (default 60, quick 20)
  --startup-timeout <s>    how long Postern may take to greet 220 (default 15)
  --workers <n|auto>       Postern workers (POSTERN_BENCH_WORKERS; default 1)
  --keep-state             keep each Postern state directory (path printed on stderr)
`

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  readonly quick: boolean
  readonly only: ReadonlyArray<string>
  readonly ceilingOnly: boolean
  readonly pin: boolean
  readonly messages: number | undefined
  readonly warmupMessages: number
  readonly idleConnections: number
  readonly timeLimitMs: number
  readonly startupTimeoutMs: number
  readonly workers: string
  readonly keepState: boolean
}

const fail = (message: string): never => {
  process.stderr.write(`${message}\n${usage}`)
  process.exit(2)
}

const positive = (name: string, value: string | undefined): number | undefined => {
  if (value === undefined) return undefined
  const n = Number(value)
  return Number.isFinite(n) && n > 0 ? n : fail(`--${name}: expected a positive number, got "${value}"`)
}

const parseOptions = (argv: ReadonlyArray<string>): Options => {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string", multiple: true, default: [] },
      "ceiling-only": { type: "boolean", default: false },
      "no-pin": { type: "boolean", default: false },
      messages: { type: "string" },
      warmup: { type: "string" },
      "idle-connections": { type: "string" },
      "time-limit": { type: "string" },
      "startup-timeout": { type: "string" },
      workers: { type: "string" },
      "keep-state": { type: "boolean", default: false },
      help: { type: "boolean", default: false }
    },
    strict: true,
    allowPositionals: false
  })
  if (values.help) {
    process.stdout.write(usage)
    process.exit(0)
  }
  const workers = values.workers ?? process.env["POSTERN_BENCH_WORKERS"] ?? "1"
  if (workers !== "auto" && !(Number.isInteger(Number(workers)) && Number(workers) > 0)) {
    fail(`--workers: expected a positive integer or "auto", got "${workers}"`)
  }
  const quick = values.quick
  const messages = positive("messages", values.messages)
  return {
    quick,
    only: values.only.flatMap((item) => item.split(",")).map((item) => item.trim()).filter((item) => item !== ""),
    ceilingOnly: values["ceiling-only"],
    pin: !values["no-pin"],
    messages: messages === undefined ? undefined : Math.ceil(messages),
    warmupMessages: values.warmup === "0" ? 0 : Math.ceil(positive("warmup", values.warmup) ?? (quick ? 0 : 15_000)),
    idleConnections: Math.ceil(positive("idle-connections", values["idle-connections"]) ?? (quick ? 1000 : 10_000)),
    timeLimitMs: (positive("time-limit", values["time-limit"]) ?? (quick ? 20 : 60)) * 1000,
    startupTimeoutMs: (positive("startup-timeout", values["startup-timeout"]) ?? 15) * 1000,
    workers,
    keepState: values["keep-state"]
  }
}

// ---------------------------------------------------------------------------------------------
// Scenarios and their sizes

/** Message size, sender, recipients and how long each step may take. */
const settings = {
  messageBytes: 1024,
  sender: "bench@source.test",
  helo: "source.test",
  discardRecipient: "bench@discard.test",
  maildirRecipient: "bench@maildir.test",
  sinkBacklog: 1024,
  serverCpu: 0,
  loadCpu: 1,
  probeIntervalMs: 100,
  stopGraceMs: 10_000,
  deliveryWaitMs: { full: 30_000, quick: 15_000 },
  deliveryPollMs: 200,
  idleInFlight: 200,
  idleGreetingTimeoutMs: 15_000,
  idleWarmup: 50,
  idleSettleMs: 1000,
  idlePerSourceAddress: 20_000,
  // Descriptors the bench and the server need besides one per idle connection.
  spareFiles: 1024,
  // Alternated rounds of Postern and smtp-sink per throughput scenario (one with --quick).
  throughputRounds: 3
} as const

type Scenario =
  | {
    readonly kind: "throughput"
    readonly id: string
    readonly concurrency: number
    readonly messagesPerConnection: number
    readonly messages: number
  }
  | { readonly kind: "maildir"; readonly id: string; readonly concurrency: number; readonly messages: number }
  | { readonly kind: "idle"; readonly id: string; readonly connections: number }
  /** The rule hot path in-process, then sessions per second without and with the ten rules. */
  | { readonly kind: "policy"; readonly id: string; readonly concurrency: number; readonly messages: number }

/** [concurrency, messages per connection, messages in a full run, in a quick run] */
const throughputSizes: ReadonlyArray<readonly [number, number, number, number]> = [
  [1, 1, 2000, 200],
  [20, 1, 10_000, 400],
  [200, 1, 10_000, 400],
  [1, 10, 5000, 200],
  [20, 10, 20_000, 400],
  // A round at concurrency 200 with ten per connection is 2,000 messages.
  [200, 10, 20_000, 2000]
]

const scenarios = (options: Options): Array<Scenario> => {
  const all: Array<Scenario> = [
    ...throughputSizes.map(([concurrency, perConnection, full, quick]): Scenario => ({
      kind: "throughput",
      id: `throughput-c${concurrency}-m${perConnection}`,
      concurrency,
      messagesPerConnection: perConnection,
      messages: options.messages ?? (options.quick ? quick : full)
    })),
    { kind: "maildir", id: "maildir-c20", concurrency: 20, messages: options.messages ?? (options.quick ? 200 : 5000) },
    { kind: "idle", id: "idle", connections: options.idleConnections },
    { kind: "policy", id: "policy", concurrency: 20, messages: options.messages ?? (options.quick ? 400 : 10_000) }
  ]
  if (options.only.length === 0) return all
  const unknown = options.only.filter((name) => !all.some((s) => s.kind === name || s.id === name) && !Tls.knows(name))
  if (unknown.length > 0) {
    fail(`--only: unknown scenario ${unknown.join(", ")}; known: throughput, maildir, idle, policy, tls, ${
      [...all, ...Tls.all].map((s) => s.id).join(", ")
    }`)
  }
  return all.filter((s) => options.only.includes(s.kind) || options.only.includes(s.id))
}

// ---------------------------------------------------------------------------------------------
// Output

type Json = string | number | boolean | null | undefined | ReadonlyArray<Json> | { readonly [key: string]: Json }

let failures = 0

const hasError = (value: Json): boolean =>
  typeof value === "object" && value !== null && !Array.isArray(value) && "error" in value

/** A round of a line's `rounds` that failed on either side (see `Rounds.errors`). */
const failedRound = (value: Json): boolean =>
  typeof value === "object" && value !== null && !Array.isArray(value) &&
  ("ceilingError" in value || "posternError" in value)

const emit = (line: { readonly [key: string]: Json }, human: string): void => {
  const rounds = line["rounds"]
  if (
    "error" in line || Object.values(line).some(hasError) ||
    (Array.isArray(rounds) && rounds.some(failedRound))
  ) failures += 1
  process.stdout.write(`${JSON.stringify(line)}\n`)
  process.stderr.write(`${human}\n`)
}

const loadJson = (result: Smtp.LoadResult) => ({
  msgsPerSec: round(result.msgsPerSec, 1),
  seconds: round(result.seconds, 3),
  messages: result.messages,
  rounds: result.rounds,
  timedOut: result.timedOut
})

const rate = (result: { readonly msgsPerSec: number; readonly timedOut: boolean } | undefined) =>
  result === undefined ? "-" : `${Math.round(result.msgsPerSec)} msg/s${result.timedOut ? " (time limit hit)" : ""}`

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

// ---------------------------------------------------------------------------------------------
// Servers

interface Context {
  readonly options: Options
  readonly pinning: Smtp.Pinning | undefined
  readonly smtpSource: string | undefined
  readonly smtpSink: string | undefined
  readonly node: string
  /** Set once Postern failed to start, so later scenarios do not wait for it again. */
  posternUnavailable: string | undefined
}

interface Postern {
  readonly server: Smtp.RunningServer
  readonly port: number
  readonly stateDirectory: string
}

const startPostern = async (context: Context, label: string, extraEnv: NodeJS.ProcessEnv = {}): Promise<Postern> => {
  if (context.posternUnavailable !== undefined) {
    throw new Smtp.BenchError({ reason: "ServerExited", message: `not started: ${context.posternUnavailable}` })
  }
  const port = await Smtp.freePort(host)
  const stateDirectory = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "postern-bench-"))
  liveStateDirectories.add(stateDirectory)
  const [command, args] = Smtp.onCpu(context.pinning, settings.serverCpu, context.node, [
    "src/main.ts",
    "serve",
    "--config",
    "bench/bench.config.ts"
  ])
  try {
    const server = await Smtp.startServer({
      command,
      args,
      cwd: root,
      env: {
        ...process.env,
        POSTERN_BENCH_PORT: String(port),
        POSTERN_BENCH_STATE: stateDirectory,
        POSTERN_BENCH_WORKERS: context.options.workers,
        ...extraEnv
      },
      host,
      port,
      logFile: NodePath.join(outputDirectory, `postern-${label}.log`),
      startupTimeoutMs: context.options.startupTimeoutMs,
      probeIntervalMs: settings.probeIntervalMs,
      stopGraceMs: settings.stopGraceMs
    })
    return { server, port, stateDirectory }
  } catch (error) {
    removeState(context, stateDirectory)
    context.posternUnavailable = errorMessage(error)
    throw error
  }
}

// State directories of servers not yet stopped, removed on exit if the bench is interrupted.
const liveStateDirectories = new Set<string>()

const removeState = (context: Context, stateDirectory: string) => {
  liveStateDirectories.delete(stateDirectory)
  if (context.options.keepState) process.stderr.write(`  state kept in ${stateDirectory}\n`)
  else NodeFs.rmSync(stateDirectory, { recursive: true, force: true, maxRetries: 3 })
}

const stopPostern = async (context: Context, postern: Postern) => {
  await Smtp.stop(postern.server.child, settings.stopGraceMs)
  removeState(context, postern.stateDirectory)
}

const startSink = async (context: Context, smtpSink: string, concurrency: number): Promise<{
  readonly server: Smtp.RunningServer
  readonly port: number
}> => {
  const port = await Smtp.freePort(host)
  // smtp-sink refuses to run as root without a user to switch to.
  const user = process.getuid?.() === 0 ? ["-u", "root"] : []
  const [command, args] = Smtp.onCpu(context.pinning, settings.serverCpu, smtpSink, [
    ...user,
    "-m",
    String(Math.max(256, concurrency * 2)),
    `${host}:${port}`,
    String(settings.sinkBacklog)
  ])
  const server = await Smtp.startServer({
    command,
    args,
    cwd: root,
    env: process.env,
    host,
    port,
    logFile: NodePath.join(outputDirectory, "smtp-sink.log"),
    startupTimeoutMs: context.options.startupTimeoutMs,
    probeIntervalMs: settings.probeIntervalMs,
    stopGraceMs: settings.stopGraceMs
  })
  return { server, port }
}

const load = (
  context: Context,
  smtpSource: string,
  port: number,
  scenario: { readonly concurrency: number; readonly messages: number },
  messagesPerConnection: number,
  recipient: string
) =>
  Smtp.runSmtpSource({
    smtpSource,
    pinning: context.pinning,
    host,
    port,
    concurrency: scenario.concurrency,
    messagesPerConnection,
    messages: scenario.messages,
    messageBytes: settings.messageBytes,
    sender: settings.sender,
    recipient,
    helo: settings.helo,
    timeLimitMs: context.options.timeLimitMs
  })

// ---------------------------------------------------------------------------------------------
// Scenario runners

const header = (context: Context, scenario: Scenario) => ({
  scenario: scenario.kind,
  id: scenario.id,
  quick: context.options.quick,
  pinned: context.pinning !== undefined
})

/**
 * The timed load, after `--warmup` untimed messages of the same shape: a freshly started Node
 * server runs its first ten thousand or so messages a third slower than it settles at (code
 * still being optimised, heap still growing), and a daemon is measured as it runs, warm. The
 * ceiling gets the same warm-up.
 */
const warmLoad = async (
  context: Context,
  smtpSource: string,
  port: number,
  scenario: Extract<Scenario, { kind: "throughput" }>
) => {
  const { warmupMessages } = context.options
  if (warmupMessages > 0) {
    await load(
      context,
      smtpSource,
      port,
      { concurrency: scenario.concurrency, messages: warmupMessages },
      scenario.messagesPerConnection,
      settings.discardRecipient
    )
  }
  return load(context, smtpSource, port, scenario, scenario.messagesPerConnection, settings.discardRecipient)
}

/** One server's figures in a throughput round, or why there are none. */
interface Measured {
  readonly json: { readonly [key: string]: Json }
  readonly result: Smtp.LoadResult | undefined
}

const runThroughput = async (context: Context, scenario: Extract<Scenario, { kind: "throughput" }>) => {
  const { rounds: sourceRounds, messagesPerRound } = Smtp.plan(scenario.concurrency, scenario.messagesPerConnection, scenario.messages)
  const base = {
    ...header(context, scenario),
    concurrency: scenario.concurrency,
    messagesPerConnection: scenario.messagesPerConnection,
    messageBytes: settings.messageBytes,
    messages: sourceRounds * messagesPerRound,
    warmupMessages: context.options.warmupMessages
  }
  const title = `throughput c=${scenario.concurrency} ${scenario.messagesPerConnection} msg/conn`
  const smtpSource = context.smtpSource
  const smtpSink = context.smtpSink
  if (smtpSource === undefined || smtpSink === undefined) {
    const skipped = `${smtpSource === undefined ? "smtp-source" : "smtp-sink"} not installed`
    emit({ ...base, skipped }, `${title}: skipped, ${skipped} (run .ci/install-bench-tools)`)
    return
  }
  // Each server is started afresh and warmed up in every round, so that a round measures what
  // a single run would.
  const measureCeiling = async (): Promise<Measured> => {
    try {
      const sink = await startSink(context, smtpSink, scenario.concurrency)
      try {
        const result = await warmLoad(context, smtpSource, sink.port, scenario)
        return { json: loadJson(result), result }
      } finally {
        await Smtp.stop(sink.server.child, settings.stopGraceMs)
      }
    } catch (error) {
      return { json: { error: errorMessage(error) }, result: undefined }
    }
  }
  const measurePostern = async (): Promise<Measured> => {
    if (context.options.ceilingOnly) return { json: { skipped: "--ceiling-only" }, result: undefined }
    try {
      const server = await startPostern(context, scenario.id)
      try {
        const result = await warmLoad(context, smtpSource, server.port, scenario)
        return { json: { ...loadJson(result), rssBytes: Smtp.treeRss(server.server.pid).bytes }, result }
      } finally {
        await stopPostern(context, server)
      }
    } catch (error) {
      return { json: { error: errorMessage(error) }, result: undefined }
    }
  }
  // Rounds compare the two servers: with Postern left out or down, one run of the ceiling says it all.
  const posternDown = () => context.posternUnavailable !== undefined
  const { chosen, rounds: measured, summary } = await Rounds.alternate({
    count: context.options.quick || context.options.ceilingOnly || posternDown() ? 1 : settings.throughputRounds,
    stopAfterFailure: posternDown,
    ceiling: measureCeiling,
    postern: measurePostern,
    ratio: (pair) =>
      pair.ceiling.result !== undefined && pair.postern.result !== undefined && pair.ceiling.result.msgsPerSec > 0
        ? round(pair.postern.result.msgsPerSec / pair.ceiling.result.msgsPerSec, 3)
        : Number.NaN,
    worse: "lower"
  })
  const { ceiling, postern } = chosen.value
  const ratio = Number.isFinite(chosen.ratio) ? chosen.ratio : null
  const spread = Rounds.spread(summary)
  const human = [
    `${title}: smtp-sink ${"error" in ceiling.json ? `error: ${String(ceiling.json["error"])}` : rate(ceiling.result)}`,
    `postern ${
      "error" in postern.json
        ? `error: ${String(postern.json["error"])}`
        : "skipped" in postern.json
        ? "skipped"
        : `${rate(postern.result)}${ratio === null ? "" : ` (${Math.round(ratio * 100)}% of the ceiling${spread === undefined ? "" : `; ${spread}`})`}`
    }`
  ].join(", ")
  emit(
    {
      ...base,
      ceiling: ceiling.json,
      postern: postern.json,
      ratio,
      rounds: measured.map(({ ratio: roundRatio, value }) => ({
        ceilingMsgsPerSec: value.ceiling.json["msgsPerSec"] ?? null,
        posternMsgsPerSec: value.postern.json["msgsPerSec"] ?? null,
        ratio: Number.isFinite(roundRatio) ? roundRatio : null,
        ...Rounds.errors(value.ceiling.json, value.postern.json)
      }))
    },
    human
  )
}

/**
 * The policy benchmark: nanoseconds per evaluation of the ten-rule rcpt stage (in this
 * process), then one-message sessions per second at concurrency 20 against Postern without
 * rules and with the same ten rules at rcpt (POSTERN_BENCH_POLICY=1), each warmed up first.
 */
const runPolicy = async (context: Context, scenario: Extract<Scenario, { kind: "policy" }>) => {
  for (const result of PolicyBench.run()) {
    emit(
      { ...header(context, scenario), id: "policy-evaluation", ...result },
      `policy: ${result.nsPerEvaluation} ns per ${result.rules}-rule evaluation (${result.case})`
    )
  }
  const smtpSource = context.smtpSource
  if (smtpSource === undefined || context.options.ceilingOnly) {
    const skipped = smtpSource === undefined ? "smtp-source not installed" : "--ceiling-only"
    emit({ ...header(context, scenario), id: "policy-sessions", skipped }, `policy sessions: skipped, ${skipped}`)
    return
  }
  const shape = { kind: "throughput", id: scenario.id, concurrency: scenario.concurrency, messagesPerConnection: 1, messages: scenario.messages } as const
  const measure = async (label: string, env: NodeJS.ProcessEnv) => {
    const server = await startPostern(context, label, env)
    try {
      return await warmLoad(context, smtpSource, server.port, shape)
    } finally {
      await stopPostern(context, server)
    }
  }
  const without = await measure("policy-without", {})
  const withRules = await measure("policy-with", { POSTERN_BENCH_POLICY: "1" })
  const loss = without.msgsPerSec > 0 ? round(1 - withRules.msgsPerSec / without.msgsPerSec, 3) : null
  emit(
    {
      ...header(context, scenario),
      id: "policy-sessions",
      concurrency: scenario.concurrency,
      messagesPerConnection: 1,
      without: loadJson(without),
      with: loadJson(withRules),
      loss
    },
    `policy sessions c=${scenario.concurrency}: ${rate(without)} without rules, ${rate(withRules)} with ten rules at rcpt${
      loss === null ? "" : ` (${(loss * 100).toFixed(1)}% less)`
    }`
  )
}

const runMaildir = async (context: Context, scenario: Extract<Scenario, { kind: "maildir" }>) => {
  const { rounds, messagesPerRound } = Smtp.plan(scenario.concurrency, 1, scenario.messages)
  const messages = rounds * messagesPerRound
  const base = {
    ...header(context, scenario),
    concurrency: scenario.concurrency,
    messagesPerConnection: 1,
    messageBytes: settings.messageBytes,
    messages
  }
  const title = `maildir c=${scenario.concurrency}`
  if (context.smtpSource === undefined) {
    emit({ ...base, skipped: "smtp-source not installed" }, `${title}: skipped, smtp-source not installed`)
    return
  }
  if (context.options.ceilingOnly) {
    emit({ ...base, skipped: "--ceiling-only" }, `${title}: skipped (--ceiling-only)`)
    return
  }
  try {
    const server = await startPostern(context, scenario.id)
    try {
      const started = performance.now()
      const result = await load(context, context.smtpSource, server.port, scenario, 1, settings.maildirRecipient)
      const mailRoot = NodePath.join(server.stateDirectory, "mail")
      const waitMs = context.options.quick ? settings.deliveryWaitMs.quick : settings.deliveryWaitMs.full
      const waitUntil = performance.now() + waitMs
      let files = Smtp.countMaildirFiles(mailRoot)
      while (files < result.messages && performance.now() < waitUntil) {
        await delay(settings.deliveryPollMs)
        files = Smtp.countMaildirFiles(mailRoot)
      }
      const deliveredSeconds = (performance.now() - started) / 1000
      const complete = files === result.messages
      const line = {
        ...base,
        postern: loadJson(result),
        files,
        filesExpected: result.messages,
        deliveredSeconds: complete ? round(deliveredSeconds, 3) : null,
        deliveredPerSec: complete ? round(files / deliveredSeconds, 1) : null,
        ...(complete
          ? {}
          : {
            error: `${files} files in ${mailRoot} for ${result.messages} accepted messages after waiting ${waitMs / 1000} s`
          })
      }
      emit(
        line,
        `${title}: postern ${rate(result)} accepted; ${files}/${result.messages} maildir files${
          complete ? ` (all delivered in ${round(deliveredSeconds, 2)} s)` : " (MISSING FILES)"
        }`
      )
    } finally {
      await stopPostern(context, server)
    }
  } catch (error) {
    emit({ ...base, error: errorMessage(error) }, `${title}: error: ${errorMessage(error)}`)
  }
}

const runIdle = async (context: Context, scenario: Extract<Scenario, { kind: "idle" }>) => {
  const base = header(context, scenario)
  const title = `idle connections`
  if (context.options.ceilingOnly) {
    emit({ ...base, connections: scenario.connections, skipped: "--ceiling-only" }, `${title}: skipped (--ceiling-only)`)
    return
  }
  // Both this process (the client side) and the server it starts need a descriptor per connection.
  const limit = Smtp.raiseFileLimit(scenario.connections + settings.spareFiles)
  const connections = Math.min(scenario.connections, limit - settings.spareFiles)
  const sized = { ...base, connections, requested: scenario.connections, fileLimit: limit }
  if (connections <= 0) {
    emit({ ...sized, error: `open-file limit ${limit} is too low` }, `${title}: error: open-file limit ${limit} is too low`)
    return
  }
  try {
    const server = await startPostern(context, scenario.id)
    let pool: Smtp.IdlePool | undefined
    try {
      const idle = (count: number) =>
        Smtp.openIdle({
          host,
          port: server.port,
          count,
          inFlight: settings.idleInFlight,
          greetingTimeoutMs: settings.idleGreetingTimeoutMs,
          perSourceAddress: settings.idlePerSourceAddress
        })
      // The first connections pay for code loaded and compiled on first use, not per connection.
      const warmup = await idle(settings.idleWarmup)
      Smtp.closeAll(warmup)
      await delay(settings.idleSettleMs)
      const before = Smtp.treeRss(server.server.pid)
      pool = await idle(connections)
      await delay(settings.idleSettleMs)
      const open = Smtp.stillOpen(pool)
      const after = Smtp.treeRss(server.server.pid)
      const perConnection = pool.greeted > 0 ? Math.round((after.bytes - before.bytes) / pool.greeted) : null
      const problems = pool.greeted < connections || open < pool.greeted
      const line = {
        ...sized,
        greeted: pool.greeted,
        refused: pool.refused,
        failed: pool.failed,
        stillOpen: open,
        openSeconds: round(pool.seconds, 3),
        processes: after.processes,
        rssBeforeBytes: before.bytes,
        rssAfterBytes: after.bytes,
        bytesPerConnection: perConnection,
        ...(problems
          ? {
            error: `${pool.greeted} of ${connections} greeted (${pool.refused} refused, ${pool.failed} failed${
              pool.firstProblem === undefined ? "" : `, first: ${pool.firstProblem}`
            }), ${open} still open at measurement`
          }
          : {})
      }
      emit(
        line,
        `${title}: ${pool.greeted}/${connections} greeted in ${round(pool.seconds, 2)} s, RSS ${
          round(before.bytes / 2 ** 20, 1)
        } -> ${round(after.bytes / 2 ** 20, 1)} MiB over ${after.processes} process(es): ${
          perConnection === null ? "-" : `${round(perConnection / 1024, 1)} KiB`
        } per idle connection${problems ? ` (PROBLEM: ${String(line.error)})` : ""}`
      )
    } finally {
      if (pool !== undefined) Smtp.closeAll(pool)
      await stopPostern(context, server)
    }
  } catch (error) {
    emit({ ...sized, error: errorMessage(error) }, `${title}: error: ${errorMessage(error)}`)
  }
}

// ---------------------------------------------------------------------------------------------
// Main

const main = async () => {
  const options = parseOptions(process.argv.slice(2))
  Smtp.installCleanup()
  process.on("exit", () => {
    if (options.keepState) return
    for (const directory of liveStateDirectories) {
      try {
        NodeFs.rmSync(directory, { recursive: true, force: true, maxRetries: 3 })
      } catch {
        // A server killed a moment ago may still be writing; the OS temp dir is cleaned anyway.
      }
    }
  })
  NodeFs.mkdirSync(outputDirectory, { recursive: true })
  const localNode = NodePath.join(root, "node_modules", ".bin", "node")
  const context: Context = {
    options,
    pinning: options.pin ? Smtp.detectPinning(settings.serverCpu, settings.loadCpu) : undefined,
    smtpSource: Smtp.which("smtp-source"),
    smtpSink: Smtp.which("smtp-sink"),
    node: NodeFs.existsSync(localNode) ? localNode : process.execPath,
    posternUnavailable: undefined
  }
  process.stderr.write(
    `postern bench${options.quick ? " (quick)" : ""}: ${
      context.pinning === undefined
        ? "not pinned"
        : `server on CPU ${settings.serverCpu}, load generator on CPU ${settings.loadCpu}`
    }; server logs in ${NodePath.relative(process.cwd(), outputDirectory) || "."}\n`
  )
  for (const scenario of scenarios(options)) {
    try {
      if (scenario.kind === "throughput") await runThroughput(context, scenario)
      else if (scenario.kind === "maildir") await runMaildir(context, scenario)
      else if (scenario.kind === "policy") await runPolicy(context, scenario)
      else await runIdle(context, scenario)
    } catch (error) {
      emit({ ...header(context, scenario), error: errorMessage(error) }, `${scenario.id}: error: ${errorMessage(error)}`)
    }
  }
  try {
    await Tls.run({
      quick: options.quick,
      only: options.only,
      ceilingOnly: options.ceilingOnly,
      pinning: context.pinning,
      node: context.node,
      root,
      outputDirectory,
      startupTimeoutMs: options.startupTimeoutMs,
      workers: options.workers,
      keepState: options.keepState,
      emit
    })
  } catch (error) {
    emit({ scenario: Tls.kind, id: Tls.kind, error: errorMessage(error) }, `tls: error: ${errorMessage(error)}`)
  }
  process.exitCode = failures > 0 ? 1 : 0
}

await main()
