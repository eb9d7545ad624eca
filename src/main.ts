/**
 * The `postern` command: serve, config check, replay. `postern serve` with no configuration file
 * runs on the embedded default, so `npm start` works on a fresh checkout.
 */
import Cluster from "node:cluster"
import { fileURLToPath } from "node:url"
import { NodeServices } from "@effect/platform-node"
import { Cause, Console, Deferred, Effect, Exit, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as UsersCli from "./auth/UsersCli.ts"
import * as DkimCli from "./policy/DkimCli.ts"
import * as QuarantineCli from "./queue/QuarantineCli.ts"
import * as BenchCli from "./bench/BenchCli.ts"
import * as Config from "./config/Config.ts"
import * as Primary from "./daemon/Primary.ts"
import * as Worker from "./daemon/Worker.ts"
import * as ReplayCli from "./log/ReplayCli.ts"
import { setExitCode } from "./Cli.ts"

const entry = fileURLToPath(import.meta.url)


const failWith = (error: Config.ConfigError) => Effect.andThen(Console.error(error.message), setExitCode(2))

const serve = Command.make(
  "serve",
  { config: Flag.String("config").pipe(Flag.withDescription("Configuration file (postern.config.ts)"), Flag.optional) },
  Effect.fnUntraced(function*({ config }) {
    const file = Option.getOrUndefined(config)
    const loaded = yield* Effect.result(Config.load(file))
    if (loaded._tag === "Failure") return yield* failWith(loaded.failure)
    yield* Primary.run({ config: loaded.success, configFile: file, entry })
  })
).pipe(Command.withDescription("Run the daemon (one worker process per core)"))

const check = Command.make(
  "check",
  { file: Argument.String("file").pipe(Argument.withDescription("Configuration file to validate")) },
  Effect.fnUntraced(function*({ file }) {
    const result = yield* Effect.result(Config.check(file))
    if (result._tag === "Failure") return yield* failWith(result.failure)
    yield* Console.log(result.success)
  })
).pipe(Command.withDescription("Validate a configuration file without starting"))

const configCommand = Command.make("config").pipe(
  Command.withDescription("Configuration tools"),
  Command.withSubcommands([check])
)

const replay = Command.make(
  "replay",
  {
    directory: Argument.String("logdir").pipe(Argument.withDescription("Log directory (default ./var/log)"), Argument.optional),
    session: Flag.String("session").pipe(Flag.withDescription("Print this session's transcript"), Flag.optional),
    follow: Flag.Boolean("follow").pipe(Flag.withDescription("Keep printing new events"), Flag.withDefault(false)),
    json: Flag.Boolean("json").pipe(Flag.withDescription("One JSON object per line"), Flag.withDefault(false)),
    verify: Flag.Boolean("verify").pipe(
      Flag.withDescription("Replay every session through the machine and report differing replies"),
      Flag.withDefault(false)
    ),
    rules: Flag.String("rules").pipe(
      Flag.withDescription("Re-evaluate the recorded decisions under this configuration file's rules; print those that change"),
      Flag.optional
    ),
    spool: Flag.String("spool").pipe(
      Flag.withDescription("With --rules: the spool directory, for the body of messages it still holds (default: spool beside logdir)"),
      Flag.optional
    ),
    since: Flag.String("since").pipe(
      Flag.withDescription("With --rules or --shadow-report: only sessions opened since this time (ISO 8601) or this long ago (\"24h\", \"7 days\")"),
      Flag.optional
    ),
    shadowReport: Flag.Boolean("shadow-report").pipe(
      Flag.withDescription("Where the shadow rules (policy.shadow) decided otherwise than the live ones"),
      Flag.withDefault(false)
    )
  },
  Effect.fnUntraced(function*(args) {
    const code = yield* ReplayCli.run({
      directory: Option.getOrElse(args.directory, () => Config.defaults.log.directory),
      session: Option.getOrUndefined(args.session),
      follow: args.follow,
      json: args.json,
      verify: args.verify,
      rules: Option.getOrUndefined(args.rules),
      since: Option.getOrUndefined(args.since),
      spool: Option.getOrUndefined(args.spool),
      shadowReport: args.shadowReport
    })
    yield* setExitCode(code)
  })
).pipe(Command.withDescription("List, print, follow or verify recorded sessions, or re-evaluate their policy decisions under other rules"))

const postern = Command.make("postern").pipe(
  Command.withDescription("Postern mail transfer agent"),
  Command.withSubcommands([serve, configCommand, replay, BenchCli.command, UsersCli.command, DkimCli.command, QuarantineCli.command])
)

const fatal = (tag: string): boolean =>
  tag === "ListenError" || tag === "CertificateError" || tag === "TicketKeyError" || tag === "DkimKeyError"

const withPolicy = (config: Config.ConfigShape, policy: Config.PolicySettings): Config.ConfigShape => ({ ...config, policy })

/** A cluster worker: configuration from the primary's environment, stop on SIGTERM. */
const worker = Effect.gen(function*() {
  const file = process.env[Primary.workerEnv.config] || undefined
  const partition = process.env[Primary.workerEnv.partition] ?? "w0"
  const workers = Number(process.env[Primary.workerEnv.workers] ?? "1")
  const json = process.env[Primary.workerEnv.configJson]
  const config = json === undefined || json === ""
    ? yield* Config.load(file)
    : withPolicy(Config.fromPrimary(json), yield* Config.loadPolicy(file))
  const stop = yield* Deferred.make<void>()
  process.on("SIGTERM", () => Deferred.doneUnsafe(stop, Effect.void))
  process.on("SIGINT", () => undefined)
  // The worker takes one reload at a time; a SIGHUP that comes while it is busy with the last
  // one is kept (the newest wins) and handed over as soon as it asks again.
  let reload: ((config: Config.ConfigShape | undefined) => void) | undefined
  let waiting: { readonly config: Config.ConfigShape | undefined } | undefined
  process.on("SIGHUP", () => {
    Effect.runPromise(Effect.option(Config.load(file))).then((next) => {
      const config = Option.getOrUndefined(next)
      const deliver = reload
      reload = undefined
      if (deliver === undefined) waiting = { config }
      else deliver(config)
    })
  })
  yield* Effect.tapError(Worker.run({
    config,
    partition,
    workers,
    stop,
    onListening: (ports) => process.send?.({ type: "listening", ports } satisfies Primary.WorkerMessage),
    onReloadRequest: (deliver) => {
      const pending = waiting
      waiting = undefined
      if (pending === undefined) reload = deliver
      else deliver(pending.config)
    }
  }), (error) =>
    // A listener that cannot be served or a certificate that cannot be used stops the daemon:
    // starting again would fail the same way. Anything else (a log or spool that failed to
    // open) ends this worker, and the primary starts it again.
    !fatal(error._tag) ? Effect.void : Effect.callback<void>((resume) => {
      const message: Primary.WorkerMessage = { type: "failed", message: error.message }
      if (process.send === undefined) return resume(Effect.void)
      process.send(message, undefined, {}, () => resume(Effect.void))
    }))
})

/**
 * Runs the program as the process, without `NodeRuntime.runMain`'s SIGTERM/SIGINT handler:
 * that handler interrupts the main fiber at once, and the daemon's processes need the signal
 * for a graceful stop of their own (421 to idle sessions, DATA allowed to finish).
 */
const runProcess = <E>(program: Effect.Effect<void, E>): void => {
  const fiber = Effect.runFork(program)
  fiber.addObserver((exit) => {
    if (Exit.isFailure(exit)) {
      process.stderr.write(`${Cause.pretty(exit.cause)}\n`)
      process.exit(1)
    }
    process.exit(typeof process.exitCode === "number" ? process.exitCode : 0)
  })
}

if (Cluster.isWorker && process.argv[2] === "worker") {
  runProcess(worker.pipe(Effect.provide(NodeServices.layer)))
} else {
  runProcess(postern.pipe(Command.run({ version: "0.1.0" }), Effect.provide(NodeServices.layer)))
}
