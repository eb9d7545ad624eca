/**
 * `postern quarantine`: what rules held instead of delivering (`quarantine(name)`).
 *
 *     postern quarantine list [--name Q] [--json] [--config FILE]   the held messages, oldest first
 *     postern quarantine release ID... [--config FILE]             deliver them to their recipients
 *     postern quarantine delete ID... [--config FILE]              delete them for good
 *
 * The quarantines are beside the configuration's Maildir root (of --config, or of the embedded
 * default: ./var/quarantine); release routes by its local domains. An ID is
 * `<quarantine>/<recipient>/<file>`, as `list` shows. Each ID done is a line on stdout; each
 * refused, a line on stderr and exit status 1 (the others are still done).
 */
import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Config from "../config/Config.ts"
import * as Quarantine from "./Quarantine.ts"
import * as Route from "./Route.ts"
import { setExitCode } from "../Cli.ts"

const config = Flag.String("config").pipe(
  Flag.withDescription("Configuration file whose Maildir root and local domains to use (default: the embedded default's)"),
  Flag.optional
)
const ids = Argument.String("id").pipe(Argument.withDescription("A held message: <quarantine>/<recipient>/<file>"), Argument.atLeast(1))

const loaded = (file: Option.Option<string>) => Config.load(Option.getOrUndefined(file))

/**
 * What ends a command early, said once on stderr (not also as the runner's stack trace): a
 * configuration that does not load (exit status 2, as `serve` and `config check`), or a
 * quarantine that cannot be read (1).
 */
const reported = <A, R>(command: Effect.Effect<A, Config.ConfigError | Quarantine.QuarantineError, R>) =>
  command.pipe(Effect.catch((error) =>
    Effect.andThen(Console.error(`postern quarantine: ${error.message}`), setExitCode(error._tag === "ConfigError" ? 2 : 1))
  ))

/** A header's text for a terminal: control characters (a spoofing Subject's CR or escapes) shown, not obeyed. */
const visible = (text: string): string =>
  text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`)

const time = (at: number): string => new Date(at).toISOString().replace("T", " ").replace(/\.\d+Z$/, "")

const list = Command.make(
  "list",
  {
    config,
    name: Flag.String("name").pipe(Flag.withDescription("Only this quarantine"), Flag.optional),
    json: Flag.Boolean("json").pipe(Flag.withDescription("One JSON object per message"), Flag.withDefault(false))
  },
  Effect.fnUntraced(function*(args) {
    const settings = yield* loaded(args.config)
    const held = yield* Quarantine.list(Quarantine.defaultRoot(settings.maildirRoot), Option.getOrUndefined(args.name))
    for (const message of held) {
      yield* Console.log(
        args.json
          ? JSON.stringify(message)
          : `${time(message.at)}  ${visible(message.id)}  ${message.size} bytes  from ${visible(message.from ?? "-")}  subject ${visible(message.subject ?? "-")}`
      )
    }
    if (!args.json) yield* Console.log(`${held.length} held`)
  }, reported)
).pipe(Command.withDescription("List the held messages, oldest first"))

/** Runs `act` on each id: a line per id done, a line on stderr per id refused (exit status 1). */
const each = (verb: string, targets: ReadonlyArray<string>, act: (id: string) => Effect.Effect<string, Quarantine.QuarantineError>) =>
  Effect.forEach(targets, (id) =>
    Effect.result(act(id)).pipe(Effect.flatMap((result) =>
      result._tag === "Success"
        ? Console.log(`${id}: ${result.success}`)
        : Effect.andThen(
          Console.error(`postern quarantine ${verb}: ${id}: ${result.failure.message}`),
          setExitCode(1)
        )
    )), { discard: true })

const release = Command.make(
  "release",
  { config, ids },
  Effect.fnUntraced(function*(args) {
    const settings = yield* loaded(args.config)
    const route = (recipient: string) => Quarantine.destinationOf(Route.route(settings.localDomains, recipient))
    yield* each("release", args.ids, (id) =>
      Effect.map(
        Quarantine.release(Quarantine.defaultRoot(settings.maildirRoot), id, { maildirRoot: settings.maildirRoot, route }),
        (where) => (where === "discarded" ? "released, discarded (a discard domain)" : `released to ${where}`)
      ))
  }, reported)
).pipe(Command.withDescription("Deliver held messages to their recipients"))

const remove = Command.make(
  "delete",
  { config, ids },
  Effect.fnUntraced(function*(args) {
    const settings = yield* loaded(args.config)
    yield* each("delete", args.ids, (id) => Effect.as(Quarantine.remove(Quarantine.defaultRoot(settings.maildirRoot), id), "deleted"))
  }, reported)
).pipe(Command.withDescription("Delete held messages for good"))

/** The `quarantine` subcommand. */
export const command = Command.make("quarantine").pipe(
  Command.withDescription("List, release or delete the messages rules held"),
  Command.withSubcommands([list, release, remove])
)
