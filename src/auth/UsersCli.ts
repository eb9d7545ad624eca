/**
 * `postern user`: manage the SMTP AUTH users file.
 *
 *     postern user add NAME [--file PATH | --config FILE]      add a user (creates the file, mode 0600)
 *     postern user passwd NAME [--file PATH | --config FILE]   change a user's password
 *     postern user remove NAME [--file PATH | --config FILE]   remove a user
 *
 * Without --file, the users file is the configuration's `auth.usersFile` (of --config, or of
 * the embedded default: ./var/users), the one the daemon reads.
 *
 * `add` and `passwd` read the password from standard input: its first line, without the line
 * ending (`printf '%s\n' "$PASSWORD" | postern user add alice --file /etc/postern/users`), so
 * that it never appears in the process list or the shell history. When standard input is a
 * terminal they ask for it twice instead, without echo.
 *
 * Names are lower-cased. On success one line on stdout says what changed; on failure one line
 * on stderr says why, and the exit status is 1.
 */
import * as Path from "node:path"
import { Console, Effect, Option, Redacted, Schema, Stdio, Stream } from "effect"
import { Argument, Command, Flag, Prompt } from "effect/cli"
import * as Config from "../config/Config.ts"
import * as Users from "./Users.ts"
import { setExitCode } from "../Cli.ts"
import { describe } from "../log/SystemError.ts"


/** A failure of this command, with the line to print. */
class Refused extends Schema.TaggedError<Refused>()("Refused", {
  message: Schema.String
}) {}

const refused = (message: string) => new Refused({ message })

/**
 * The password from standard input: its first line without the line ending, or (on a terminal)
 * typed twice without echo. Fails when it is empty.
 */
const readPassword = Effect.gen(function*() {
  const stdio = yield* Stdio.Stdio
  let password: string
  if (yield* stdio.stdinIsTerminal) {
    const first = yield* Prompt.Hidden({ message: "Password" })
    const again = yield* Prompt.Hidden({ message: "Password again" })
    if (Redacted.value(first) !== Redacted.value(again)) return yield* Effect.fail(refused("the passwords differ"))
    password = Redacted.value(first)
  } else {
    const line = yield* stdio.stdin.pipe(Stream.decodeText(), Stream.splitLines, Stream.runHead)
    password = Option.getOrElse(line, () => "")
  }
  if (password === "") {
    return yield* Effect.fail(refused("the password is empty (give it as the first line of standard input)"))
  }
  return password
})

const change = <A>(run: () => Promise<A>) =>
  Effect.tryPromise({
    try: run,
    catch: (error) => refused(describe(error))
  })

/** Runs a subcommand: its confirmation on stdout, or `postern user <verb>: <why>` on stderr and exit status 1. */
const perform = <E extends { readonly message: string }, R>(verb: string, effect: Effect.Effect<string, E, R>) =>
  Effect.gen(function*() {
    const result = yield* Effect.result(effect)
    if (result._tag === "Failure") {
      yield* Console.error(`postern user ${verb}: ${result.failure.message}`)
      return yield* setExitCode(1)
    }
    yield* Console.log(result.success)
  })

const name = Argument.String("name").pipe(Argument.withDescription("User name (case-insensitive: stored lower-cased)"))
const file = Flag.String("file").pipe(Flag.withDescription("The users file (default: the configuration's auth.usersFile)"), Flag.optional)
const config = Flag.String("config").pipe(
  Flag.withDescription("Configuration file whose auth.usersFile to use (default: the embedded default's, ./var/users)"),
  Flag.optional
)

/** The users file: --file, else the configuration's `auth.usersFile`. */
const usersFileOf = (args: { readonly file: Option.Option<string>; readonly config: Option.Option<string> }) =>
  Option.isSome(args.file)
    ? Effect.succeed(Path.resolve(args.file.value))
    : Config.load(Option.getOrUndefined(args.config)).pipe(
      Effect.map((loaded) => loaded.auth.usersFile),
      Effect.mapError((error) => refused(error.message))
    )

const add = Command.make(
  "add",
  { name, file, config },
  Effect.fnUntraced(function*(args) {
    yield* perform(
      "add",
      Effect.gen(function*() {
        const path = yield* usersFileOf(args)
        const password = yield* readPassword
        const user = yield* change(() => Users.addUser(path, args.name, password))
        return `user ${user} added to ${path}`
      })
    )
  })
).pipe(Command.withDescription("Add a user; the password is the first line of standard input"))

const passwd = Command.make(
  "passwd",
  { name, file, config },
  Effect.fnUntraced(function*(args) {
    yield* perform(
      "passwd",
      Effect.gen(function*() {
        const path = yield* usersFileOf(args)
        const password = yield* readPassword
        const user = yield* change(() => Users.setPassword(path, args.name, password))
        return `password of user ${user} changed in ${path}`
      })
    )
  })
).pipe(Command.withDescription("Change a user's password; the new one is the first line of standard input"))

const remove = Command.make(
  "remove",
  { name, file, config },
  Effect.fnUntraced(function*(args) {
    yield* perform(
      "remove",
      Effect.gen(function*() {
        const path = yield* usersFileOf(args)
        const user = yield* change(() => Users.removeUser(path, args.name))
        return `user ${user} removed from ${path}`
      })
    )
  })
).pipe(Command.withDescription("Remove a user"))

/** The `user` subcommand. */
export const command = Command.make("user").pipe(
  Command.withDescription("Manage the SMTP AUTH users file"),
  Command.withSubcommands([add, passwd, remove])
)
