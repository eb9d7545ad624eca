/**
 * The quarantines: messages a rule held (`quarantine(name)`) instead of delivering them, one
 * Maildir per quarantine and recipient, `<root>/<quarantine>/<recipient>/{new,cur}/<file>`
 * (Queue writes them). What an administrator does with them, as Postfix's `postsuper -H/-d`
 * does with its hold queue: list them, release one to its recipient, or delete it.
 *
 * A held message is named by its id `<quarantine>/<recipient>/<file>`, the path under the root.
 * Release delivers it to the recipient as the queue would (Maildir.deliver: tmp, fsync, rename,
 * fsync), under the same file name, and only then removes the quarantined copy: a crash in
 * between leaves both, and releasing again finds the copy already delivered and finishes.
 */
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { Effect, Schema } from "effect"
import * as Fsync from "../log/Fsync.ts"
import { describe, isMissing } from "../log/SystemError.ts"
import * as Headers from "../session/Headers.ts"
import * as Maildir from "./Maildir.ts"
import type * as Route from "./Route.ts"

/** Where the quarantines are by default: `quarantine` beside the Maildir root. */
export const defaultRoot = (maildirRoot: string): string => Path.join(Path.dirname(maildirRoot), "quarantine")

export class QuarantineError extends Schema.TaggedError<QuarantineError>()("QuarantineError", {
  id: Schema.String,
  message: Schema.String
}) {}

/** A held message. */
export interface Held {
  /** `<quarantine>/<recipient>/<file>`: what release and delete take. */
  readonly id: string
  readonly quarantine: string
  readonly recipient: string
  readonly path: string
  readonly size: number
  /** When it was held (the file's modification time), epoch milliseconds. */
  readonly at: number
  readonly from: string | undefined
  readonly subject: string | undefined
}

const names = (directory: string): Promise<Array<string>> =>
  Fs.readdir(directory).then((entries) => entries.sort(), () => [])

/** The header fields of a held file's first 64 KiB. */
const headersOf = async (path: string): Promise<ReadonlyArray<Headers.Header>> => {
  const handle = await Fs.open(path, "r")
  try {
    const start = new Uint8Array(Headers.maxBytes)
    const { bytesRead } = await handle.read(start, 0, start.length, 0)
    const collector = Headers.collector()
    collector.push(start.subarray(0, bytesRead))
    return collector.headers()
  } finally {
    await handle.close()
  }
}

/** Every held message (of `only` the named quarantine, as rules name it), oldest first. */
export const list = (root: string, only?: string): Effect.Effect<ReadonlyArray<Held>> =>
  Effect.promise(async () => {
    const held: Array<Held> = []
    // The quarantine's directory, as Queue names it: a name that could leave the root cannot.
    const named = only === undefined ? undefined : Maildir.directoryName(only)
    const quarantines = only === undefined ? await names(root) : named === undefined ? [] : [named]
    for (const quarantine of quarantines) {
      for (const recipient of await names(Path.join(root, quarantine))) {
        for (const sub of ["new", "cur"]) {
          const directory = Path.join(root, quarantine, recipient, sub)
          for (const file of await names(directory)) {
            const path = Path.join(directory, file)
            const stat = await Fs.lstat(path).catch(() => undefined)
            if (stat === undefined || !stat.isFile()) continue
            const headers = await headersOf(path).catch(() => [])
            held.push({
              id: `${quarantine}/${recipient}/${file}`,
              quarantine,
              recipient: Maildir.fromDirectoryName(recipient),
              path,
              size: stat.size,
              at: stat.mtimeMs,
              from: Headers.first(headers, "from"),
              subject: Headers.first(headers, "subject")
            })
          }
        }
      }
    }
    return held.sort((a, b) => a.at - b.at)
  })

/** The held file an id names, checked to stay under the root. */
const find = (root: string, id: string): Effect.Effect<{ readonly path: string; readonly recipient: string; readonly file: string }, QuarantineError> =>
  Effect.gen(function*() {
    const parts = id.split("/")
    const unsafe = parts.length !== 3 || parts.some((part) => part === "" || part === "." || part === ".." || part.includes("\u0000"))
    const [quarantine, recipient, file] = parts
    if (unsafe || quarantine === undefined || recipient === undefined || file === undefined) {
      return yield* new QuarantineError({ id, message: "not a held message's id (<quarantine>/<recipient>/<file>, as `postern quarantine list` shows)" })
    }
    for (const sub of ["new", "cur"]) {
      const path = Path.join(root, quarantine, recipient, sub, file)
      // lstat: a link planted in a quarantine is never followed (release may run as root).
      const found = yield* Effect.tryPromise({
        try: () => Fs.lstat(path).then((s) => s.isFile(), (error: unknown) => (isMissing(error) ? false : Promise.reject(error))),
        catch: (error) => new QuarantineError({ id, message: `cannot read ${path}: ${describe(error)}` })
      })
      // A reader's flags (":2,S") stay behind: the copy is new to the recipient.
      if (found) return { path, recipient: Maildir.fromDirectoryName(recipient), file: file.replace(/:.*$/, "") }
    }
    return yield* new QuarantineError({ id, message: "no such held message (released or deleted already?)" })
  })

const removeHeld = (id: string, path: string) =>
  Effect.tryPromise({
    try: async () => {
      await Fs.unlink(path)
      await Fsync.directory(Path.dirname(path))
    },
    catch: (error) => new QuarantineError({ id, message: `could not remove ${path}: ${describe(error)}` })
  })

/**
 * Release writes mailboxes as the user it runs as: run by another user than the one who owns the
 * Maildir root (root, through sudo), it would leave directories and files the daemon and mail
 * readers cannot use. It refuses instead.
 */
const sameOwner = (id: string, maildirRoot: string): Effect.Effect<void, QuarantineError> =>
  Effect.gen(function*() {
    const euid = process.geteuid?.()
    if (euid === undefined) return
    // The Maildir root, or the first of its parents that exists yet.
    let directory = maildirRoot
    for (;;) {
      const owner = yield* Effect.promise(() => Fs.stat(directory).then((s) => s.uid, () => undefined))
      if (owner !== undefined) {
        if (owner === euid) return
        return yield* new QuarantineError({
          id,
          message: `${directory} belongs to uid ${owner}, and this runs as uid ${euid}: release as the user that owns the mailboxes (the daemon's)`
        })
      }
      const parent = Path.dirname(directory)
      if (parent === directory) return
      directory = parent
    }
  })

/** Where a released message goes: the recipient's mailbox, or nowhere (a discard domain). */
export type Destination =
  | { readonly _tag: "Maildir"; readonly domain: string; readonly user: string }
  | { readonly _tag: "Discard" }
  | { readonly _tag: "Refused"; readonly reason: string }

/**
 * Delivers a held message to its recipient (`route` says where) and removes it from the
 * quarantine; the path it was delivered to, or "discarded".
 */
export const release = (
  root: string,
  id: string,
  options: { readonly maildirRoot: string; readonly route: (recipient: string) => Destination }
): Effect.Effect<string, QuarantineError> =>
  Effect.gen(function*() {
    const held = yield* find(root, id)
    yield* sameOwner(id, options.maildirRoot)
    const destination = options.route(held.recipient)
    if (destination._tag === "Refused") return yield* new QuarantineError({ id, message: destination.reason })
    if (destination._tag === "Discard") {
      yield* removeHeld(id, held.path)
      return "discarded"
    }
    const content = yield* Effect.tryPromise({
      try: () => Fs.readFile(held.path),
      catch: (error) =>
        new QuarantineError({ id, message: isMissing(error) ? "no such held message (released or deleted already?)" : `cannot read ${held.path}: ${describe(error)}` })
    })
    const outcome = yield* Maildir.deliver({
      root: options.maildirRoot,
      domain: destination.domain,
      user: destination.user,
      name: held.file,
      content: [new Uint8Array(content.buffer, content.byteOffset, content.byteLength)]
    }).pipe(Effect.mapError((error) => new QuarantineError({ id, message: `${error.operation} ${error.path}: ${error.message}` })))
    yield* removeHeld(id, held.path)
    return outcome.path
  })

/** Deletes a held message for good. */
export const remove = (root: string, id: string): Effect.Effect<void, QuarantineError> =>
  Effect.flatMap(find(root, id), (held) => removeHeld(id, held.path))

/** A destination from the queue's routing of a recipient. */
export const destinationOf = (route: Route.Route): Destination =>
  route._tag === "Remote"
    ? { _tag: "Refused", reason: `${route.domain} is not a local domain, and outbound delivery is not implemented` }
    : route._tag === "Rejected"
    ? { _tag: "Refused", reason: route.reason }
    : route
