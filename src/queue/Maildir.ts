/**
 * Local delivery into Maildir mailboxes, `<root>/<domain>/<user>/{tmp,new,cur}`.
 *
 * A message is written to `tmp/<name>`, fsynced, renamed into `new/<name>`, and `new/` is
 * fsynced: once `deliver` returns, the message survives a crash, and until the rename a
 * reader never sees it, so a failed or interrupted delivery leaves no partial message behind.
 *
 * Delivery is idempotent, which is what makes the queue's redelivery after a crash exactly
 * once: `name` is derived from the queue event (`messageName`), and when `new/<name>` exists
 * or `cur/` holds a file named `<name>` plus an info suffix (a mail reader moved it and added
 * flags such as `:2,S`), `deliver` writes nothing and answers `AlreadyDelivered`.
 *
 * Mailbox directory names come from the domain and the local part, lower-cased, with the
 * characters that could escape the root (`/`, a leading `.`, `\` and NUL) written as
 * backslash-octal escapes, so no address can name a path outside its domain's directory.
 */
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { Effect, Schema, Stream } from "effect"
import * as Fsync from "../log/Fsync.ts"
import { describe, isMissing } from "../log/SystemError.ts"

/** A mailbox could not be resolved, read or written; `operation` names the step. */
export class MaildirError extends Schema.TaggedError<MaildirError>()("MaildirError", {
  operation: Schema.String,
  path: Schema.String,
  message: Schema.String
}) {}

/** Permissions of the directories `deliver` creates. */
export const directoryMode = 0o700
/** Permissions of delivered files. */
export const fileMode = 0o600

const octal = (char: string): string => `\\${char.charCodeAt(0).toString(8).padStart(3, "0")}`

/**
 * A domain or local part as one safe directory name: lower-cased, with `\`, `/` and NUL
 * escaped everywhere and `.` escaped at the start. `undefined` for the empty string.
 */
export const directoryName = (text: string): string | undefined => {
  if (text.length === 0) return undefined
  const escaped = text.toLowerCase().replace(/[\\/\u0000]/g, octal)
  return escaped.startsWith(".") ? octal(".") + escaped.slice(1) : escaped
}

/** The text a directory name stands for: `directoryName`'s escapes undone (its lower case stays). */
export const fromDirectoryName = (directory: string): string =>
  directory.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)))

/** The host part of a Maildir file name: the spec's escapes for `/` and `:`. */
export const hostPart = (hostname: string): string => hostname.replace(/\//g, "\\057").replace(/:/g, "\\072")

/**
 * The deterministic file name of one recipient's copy of a queued message, in the Maildir
 * `time.unique.host` form: `<queue time in seconds>.<queueId>_<recipient index>.<host>`.
 */
export const messageName = (message: {
  readonly at: number
  readonly queueId: string
  readonly index: number
  readonly hostname: string
}): string => `${Math.floor(message.at / 1000)}.${message.queueId}_${message.index}.${hostPart(message.hostname)}`

/** Which mailbox and which file. */
export interface Target {
  readonly root: string
  /** The recipient's domain (made safe here). */
  readonly domain: string
  /** The recipient's local part (lower-cased and made safe here). */
  readonly user: string
  /** The file name, usually from `messageName`. */
  readonly name: string
}

/** The directories of a target's mailbox. */
export interface Mailbox {
  readonly directory: string
  readonly tmp: string
  readonly new: string
  readonly cur: string
}

/** Where a target's mailbox is, or why the target is unusable. */
export const mailbox = (target: Target): Mailbox | MaildirError => {
  const domain = directoryName(target.domain)
  const user = directoryName(target.user)
  const problem = (message: string) => new MaildirError({ operation: "resolve", path: target.root, message })
  if (domain === undefined) return problem("empty domain")
  if (user === undefined) return problem("empty local part")
  if (
    target.name.length === 0 || target.name === "." || target.name === ".." || /[/\u0000]/.test(target.name)
  ) return problem(`unsafe file name ${JSON.stringify(target.name)}`)
  const directory = Path.join(target.root, domain, user)
  return {
    directory,
    tmp: Path.join(directory, "tmp"),
    new: Path.join(directory, "new"),
    cur: Path.join(directory, "cur")
  }
}

/** What `deliver` did. */
export type Outcome =
  | { readonly _tag: "Delivered"; readonly path: string }
  /** The file was already there (in `new/`, or in `cur/` with flags): nothing was written. */
  | { readonly _tag: "AlreadyDelivered"; readonly path: string }

const failure = (operation: string, path: string) => (error: unknown): MaildirError =>
  new MaildirError({ operation, path, message: describe(error) })

const attempt = <A>(operation: string, path: string, run: () => Promise<A>): Effect.Effect<A, MaildirError> =>
  Effect.tryPromise({ try: run, catch: failure(operation, path) })

/** Whether `file` in `cur/` is `name` itself or `name` followed by an info suffix (`:2,S`, `,S=123`). */
const isCopyOf = (file: string, name: string): boolean => {
  if (!file.startsWith(name)) return false
  const next = file.charAt(name.length)
  return next === "" || next === ":" || next === "," || next === ";" || next === "!"
}

/**
 * The path of the target's file if it was already delivered. With `scanCur: false` only
 * `new/` is checked (one `stat`), for callers that know no earlier attempt renamed the file.
 */
export const find = (target: Target, options?: { readonly scanCur?: boolean }): Effect.Effect<
  string | undefined,
  MaildirError
> =>
  Effect.suspend(() => {
    const box = mailbox(target)
    return box instanceof MaildirError ? Effect.fail(box) : findIn(box, target.name, options?.scanCur !== false)
  })

/** `find` in a mailbox already worked out. */
const findIn = (box: Mailbox, name: string, scanCur: boolean): Effect.Effect<string | undefined, MaildirError> =>
  Effect.suspend(() => {
    const fresh = Path.join(box.new, name)
    const inNew = attempt("stat", fresh, () =>
      Fs.stat(fresh).then(
        () => true,
        (error: unknown) => {
          if (isMissing(error)) return false
          throw error
        }
      ))
    const inCur = attempt("readdir", box.cur, async () => {
      let directory: Awaited<ReturnType<typeof Fs.opendir>>
      try {
        directory = await Fs.opendir(box.cur)
      } catch (error) {
        if (isMissing(error)) return undefined
        throw error
      }
      for await (const entry of directory) {
        if (isCopyOf(entry.name, name)) return Path.join(box.cur, entry.name)
      }
      return undefined
    })
    return Effect.flatMap(inNew, (found): Effect.Effect<string | undefined, MaildirError> => {
      if (found) return Effect.succeed(fresh)
      return scanCur ? inCur : Effect.succeed(undefined)
    })
  })

const fsyncDirectory = (path: string): Effect.Effect<void, MaildirError> =>
  attempt("fsync", path, () => Fsync.directory(path))

/** Creates tmp/, new/ and cur/ (and the directories above them) and makes the new entries durable. */
const ensureMailbox = Effect.fnUntraced(function*(box: Mailbox) {
  const created: Array<string> = []
  for (const dir of [box.tmp, box.new, box.cur]) {
    const first = yield* attempt("mkdir", dir, () => Fs.mkdir(dir, { recursive: true, mode: directoryMode }))
    if (first !== undefined) created.push(first)
  }
  if (created.length === 0) return
  // Every directory that gained an entry: the mailbox itself and each one up to the parent
  // of the highest directory created.
  const stop = Path.dirname(created.reduce((a, b) => (a.length <= b.length ? a : b)))
  const parents: Array<string> = []
  for (let dir = box.directory; ; dir = Path.dirname(dir)) {
    parents.push(dir)
    if (dir === stop || dir === Path.dirname(dir)) break
  }
  for (const dir of parents) yield* fsyncDirectory(dir)
})

export interface DeliverOptions<E> extends Target {
  readonly content: Stream.Stream<Uint8Array, E> | Iterable<Uint8Array>
  /**
   * false skips the search of `cur/` for a copy a reader has already moved: only for a first
   * attempt, when no earlier attempt can have renamed the file.
   */
  readonly scanCur?: boolean
}

/** Delivers `content` to the target mailbox, exactly once per `name` (see the module doc). */
export const deliver = <E = never>(options: DeliverOptions<E>): Effect.Effect<Outcome, MaildirError | E> =>
  Effect.gen({ self: options }, deliverInto)

/** The body of `deliver`, made once (a generator made per call would cost a V8 map each: bench/README.md). */
function* deliverInto<E>(this: DeliverOptions<E>): Effect.fn.Return<Outcome, MaildirError | E> {
  const box = mailbox(this)
  if (box instanceof MaildirError) return yield* box
  const existing = yield* findIn(box, this.name, this.scanCur !== false)
  if (existing !== undefined) return { _tag: "AlreadyDelivered", path: existing } as const
  yield* ensureMailbox(box)

  const tmp = Path.join(box.tmp, this.name)
  const destination = Path.join(box.new, this.name)
  const content: Stream.Stream<Uint8Array, E> = Stream.isStream(this.content)
    ? this.content
    : Stream.fromIterable(this.content)
  const writeFile = Effect.acquireUseRelease(
    attempt("open", tmp, () => Fs.open(tmp, "w", fileMode)),
    (handle) =>
      Stream.runForEach(content, (chunk) =>
        attempt("write", tmp, async () => {
          let offset = 0
          while (offset < chunk.length) {
            const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset)
            offset += bytesWritten
          }
        })).pipe(Effect.andThen(attempt("fsync", tmp, () => handle.sync()))),
    (handle) => Effect.promise(() => handle.close().catch(() => undefined))
  )
  yield* writeFile.pipe(
    Effect.andThen(attempt("rename", tmp, () => Fs.rename(tmp, destination))),
    Effect.onError(() => Effect.promise(() => Fs.unlink(tmp).catch(() => undefined)))
  )
  yield* fsyncDirectory(box.new)
  return { _tag: "Delivered", path: destination } as const
}
