/**
 * The SMTP AUTH users file, what Postfix and Dovecot admins know as a passwd-file: UTF-8 text,
 * one user per line,
 *
 *     name:$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt base64>$<hash base64>
 *
 * with blank lines and lines starting with `#` ignored. Base64 is the standard alphabet; it is
 * written without padding (as in the PHC string format) and read with or without it.
 *
 * Names are 1 to 64 characters, without `:`, whitespace or control characters, and not
 * starting with `#` (that line would be a comment). They are case-insensitive, as mail users
 * are in practice: a name is lower-cased when it is added, when the file is read and when a
 * client authenticates, and the lower-cased form is the canonical name `verify` answers with.
 *
 * Passwords are hashed with scrypt (N = 2^14, r = 8, p = 1, a 16-byte random salt, a 32-byte
 * key); verification uses the parameters recorded in each line, so a file whose hashes were
 * made with other costs keeps working.
 *
 * Everything here is a plain async function rather than an Effect: the file is small, it is
 * touched by one command-line run or by the rare AUTH, node:crypto's scrypt and node:fs are
 * promise or callback APIs, and `Fsync.replaceFile` (which writes it) is one too. A caller in
 * Effect wraps them with `Effect.tryPromise`; the functions that change the file reject only
 * with `UsersError`.
 *
 * The editing functions (`addUser`, `setPassword`, `removeUser`) keep the file's comments,
 * blank lines and order, change only the line of the user concerned (a new user goes at the
 * end), and refuse to touch a file that has problems (a malformed line, a duplicate name), so
 * that a rewrite never silently drops a line an admin wrote. They are serialized within one
 * process; two processes editing the same file at the same moment can lose one of the edits
 * (each replaces the file atomically, so it is never torn).
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { Schema } from "effect"
import * as Fsync from "../log/Fsync.ts"
import { describe, errorCode, isMissing } from "../log/SystemError.ts"

/** Why a change to the users file was refused or failed. */
export class UsersError extends Schema.TaggedError<UsersError>()("UsersError", {
  reason: Schema.Literals(["InvalidName", "EmptyPassword", "UserExists", "NoSuchUser", "FileProblems", "Io"]),
  file: Schema.String,
  message: Schema.String
}) {}

/** A line of the users file that is not used, with its 1-based line number. */
export interface Problem {
  readonly line: number
  readonly reason: string
}

/** The cost of new hashes. */
const scryptParameters = { ln: 14, r: 8, p: 1, saltBytes: 16, keyBytes: 32 } as const

/** Permissions of the users file. */
const fileMode = 0o600

/** The longest name, in characters. */
const maxNameLength = 64

// Bounds on what a line may ask of scrypt, so that a hand-edited or damaged line cannot make a
// verification take minutes or gigabytes.
const maxLn = 20
const maxR = 32
const maxP = 16
const maxMemory = 256 * 1024 * 1024

const encodeBase64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64").replace(/=+$/, "")

/** The bytes of canonical base64 (padding optional), or undefined. */
const decodeBase64 = (text: string): Buffer | undefined => {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return undefined
  const bytes = Buffer.from(text, "base64")
  return encodeBase64(bytes) === text.replace(/=+$/, "") ? bytes : undefined
}

interface Decoded {
  readonly ln: number
  readonly r: number
  readonly p: number
  readonly salt: Buffer
  readonly hash: Buffer
}

const encodedPattern = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,3}),p=(\d{1,3})\$([^$]+)\$([^$]+)$/

/** The parameters, salt and hash of an encoded password, or undefined when it is malformed or out of bounds. */
const decode = (encoded: string): Decoded | undefined => {
  const match = encodedPattern.exec(encoded)
  if (match === null) return undefined
  const [, lnText, rText, pText, saltText, hashText] = match
  if (lnText === undefined || rText === undefined || pText === undefined) return undefined
  if (saltText === undefined || hashText === undefined) return undefined
  const ln = Number(lnText)
  const r = Number(rText)
  const p = Number(pText)
  if (ln < 1 || ln > maxLn || r < 1 || r > maxR || p < 1 || p > maxP) return undefined
  if (memoryOf(ln, r, p) > maxMemory) return undefined
  const salt = decodeBase64(saltText)
  const hash = decodeBase64(hashText)
  if (salt === undefined || salt.length < 8 || salt.length > 64) return undefined
  if (hash === undefined || hash.length < 16 || hash.length > 64) return undefined
  return { ln, r, p, salt, hash }
}

/** What OpenSSL's scrypt allocates: 128·r·(N + 2) for V and 128·r·p for B. */
const memoryOf = (ln: number, r: number, p: number): number => 128 * r * (2 ** ln + 2 + p)

const scrypt = (password: string, salt: Uint8Array, keyBytes: number, ln: number, r: number, p: number) =>
  new Promise<Buffer>((resolve, reject) => {
    Crypto.scrypt(
      password,
      salt,
      keyBytes,
      { N: 2 ** ln, r, p, maxmem: memoryOf(ln, r, p) + 1024 * 1024 },
      (error, key) => (error === null ? resolve(key) : reject(error))
    )
  })

/** `password` hashed with a fresh salt, in the users file's encoding. */
export const hashPassword = async (password: string): Promise<string> => {
  const { ln, r, p, saltBytes, keyBytes } = scryptParameters
  const salt = Crypto.randomBytes(saltBytes)
  const hash = await scrypt(password, salt, keyBytes, ln, r, p)
  return `$scrypt$ln=${ln},r=${r},p=${p}$${encodeBase64(salt)}$${encodeBase64(hash)}`
}

/** Whether `encoded` is a well-formed hash with parameters `verifyPassword` accepts. */
export const isEncodedPassword = (encoded: string): boolean => decode(encoded) !== undefined

/**
 * Whether `password` is the one `encoded` was made from, compared in constant time. A
 * malformed or out-of-bounds `encoded` answers false; this never rejects.
 */
export const verifyPassword = async (password: string, encoded: string): Promise<boolean> => {
  const decoded = decode(encoded)
  if (decoded === undefined) return false
  try {
    const key = await scrypt(password, decoded.salt, decoded.hash.length, decoded.ln, decoded.r, decoded.p)
    return Crypto.timingSafeEqual(key, decoded.hash)
  } catch {
    return false
  }
}

/**
 * Why `name` (already lower-cased) cannot be a user name, or undefined when it can. Counted in
 * code points, so that a name of 64 non-BMP characters is 64 long.
 */
const nameProblem = (name: string): string | undefined => {
  const length = [...name].length
  if (length === 0) return "the name is empty"
  if (length > maxNameLength) return `the name is longer than ${maxNameLength} characters`
  if (name.includes(":")) return "the name contains ':'"
  if (/[\s\p{Z}]/u.test(name)) return "the name contains whitespace"
  if (/[\p{Cc}\p{Cs}]/u.test(name)) return "the name contains a control character"
  if (name.startsWith("#")) return "the name starts with '#'"
  return undefined
}

/** The canonical (lower-cased) form of `name`, or undefined when it is not a valid user name. */
export const canonicalName = (name: string): string | undefined => {
  const lower = name.toLowerCase()
  return nameProblem(lower) === undefined ? lower : undefined
}

/** A line as the editing functions keep it: a user, or text that is kept as it is. */
type Line =
  | { readonly _tag: "User"; readonly name: string; readonly encoded: string }
  | { readonly _tag: "Text"; readonly text: string }

interface Parsed {
  readonly lines: ReadonlyArray<Line>
  readonly users: ReadonlyMap<string, string>
  readonly problems: ReadonlyArray<Problem>
}

const quote = (text: string): string => JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text)

const parse = (text: string): Parsed => {
  const lines: Array<Line> = []
  const users = new Map<string, string>()
  const firstLine = new Map<string, number>()
  const problems: Array<Problem> = []
  const raw = text.split("\n")
  if (raw.at(-1) === "") raw.pop()
  raw.forEach((rawLine, index) => {
    const number = index + 1
    const kept = rawLine.endsWith("\r") ? rawLine.slice(0, -1) : rawLine
    const line = kept.trim()
    if (line === "" || line.startsWith("#")) return void lines.push({ _tag: "Text", text: kept })
    const problem = (reason: string) => {
      problems.push({ line: number, reason })
      lines.push({ _tag: "Text", text: kept })
    }
    const colon = line.indexOf(":")
    if (colon < 0) return problem("expected name:password-hash")
    const given = line.slice(0, colon)
    const name = given.toLowerCase()
    const invalid = nameProblem(name)
    if (invalid !== undefined) return problem(`invalid user name ${quote(given)}: ${invalid}`)
    const encoded = line.slice(colon + 1)
    if (decode(encoded) === undefined) {
      return problem(`user ${name}: the password hash is not $scrypt$ln=N,r=R,p=P$salt$hash with supported parameters`)
    }
    const first = firstLine.get(name)
    if (first !== undefined) return problem(`user ${name} is already on line ${first}; this line is ignored`)
    firstLine.set(name, number)
    users.set(name, encoded)
    lines.push({ _tag: "User", name, encoded })
  })
  return { lines, users, problems }
}

/**
 * The users of a users file (canonical name to encoded password) and the lines that were not
 * used, with why. Names are lower-cased; of two lines for the same name the first counts.
 */
export const parseUsersFile = (text: string): {
  readonly users: ReadonlyMap<string, string>
  readonly problems: ReadonlyArray<Problem>
} => {
  const { problems, users } = parse(text)
  return { users, problems }
}

/**
 * A users file holding `users`, one line each, sorted by name, with a trailing newline (empty
 * for no users). The names and encoded passwords are written as given.
 */
export const formatUsersFile = (users: ReadonlyMap<string, string>): string =>
  [...users.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, encoded]) => `${name}:${encoded}\n`)
    .join("")

const render = (lines: ReadonlyArray<Line>): string =>
  lines.map((line) => `${line._tag === "User" ? `${line.name}:${line.encoded}` : line.text}\n`).join("")

// ---------------------------------------------------------------------------------------------
// The store the SMTP server verifies against.

/** What a (re)load of the users file found, for the caller to log. */
export interface StoreLoad {
  readonly file: string
  readonly users: number
  readonly problems: ReadonlyArray<Problem>
  /** Why the file could not be read ("missing" when it does not exist), or undefined. */
  readonly error: string | undefined
}

export interface Store {
  /**
   * The canonical (lower-cased) name when `password` is the user's, otherwise undefined. Never
   * rejects. Takes one scrypt whether or not the user exists, so the time it takes does not
   * tell which users do.
   */
  readonly verify: (name: string, password: string) => Promise<string | undefined>
}

/**
 * What an unknown user, an invalid name or a missing file is verified against, so that it costs
 * one scrypt of the default cost like a known user. Its password does not matter: `verify`
 * never succeeds without a user.
 */
const dummyHash = "$scrypt$ln=14,r=8,p=1$i7LpbSHLeFifjxGUogAykQ$uxeVX1+FzhGqcIMay+S/1CP2MQRutBYCtQaTlYNtSCA"


/**
 * What identifies a version of the file: inode (an atomic replace makes a new one), size,
 * modification and change time (a chmod that makes it readable changes the latter).
 */
const versionOf = async (file: string): Promise<string> => {
  try {
    const stats = await Fs.stat(file, { bigint: true })
    return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`
  } catch (error) {
    return isMissing(error) ? "missing" : `error:${errorCode(error) ?? describe(error)}`
  }
}

const noUsers: ReadonlyMap<string, string> = new Map()

/**
 * The users of `file` for SMTP AUTH. The file is read at the first `verify` and again whenever
 * its inode, size, modification or change time differ from the last read (one `stat` per
 * `verify`: AUTH is rare), so an edit takes effect without a restart. A missing or unreadable
 * file has no users: every `verify` fails. `onLoad` hears of every (re)load, with the lines
 * that were not used, so that the caller can log them.
 */
export const makeStore = (
  file: string,
  options: { readonly onLoad?: (load: StoreLoad) => void } = {}
): Store => {
  let current: { readonly version: string; readonly users: ReadonlyMap<string, string> } | undefined
  let loading: { readonly version: string; readonly users: Promise<ReadonlyMap<string, string>> } | undefined

  const report = (load: Omit<StoreLoad, "file">) => {
    try {
      options.onLoad?.({ file, ...load })
    } catch {
      // A logging callback that throws must not fail authentication.
    }
  }

  const load = async (version: string): Promise<ReadonlyMap<string, string>> => {
    if (version === "missing" || version.startsWith("error:")) {
      report({ users: 0, problems: [], error: version === "missing" ? "missing" : version.slice("error:".length) })
      return noUsers
    }
    try {
      const { users, problems } = parseUsersFile(await Fs.readFile(file, "utf8"))
      report({ users: users.size, problems, error: undefined })
      return users
    } catch (error) {
      report({ users: 0, problems: [], error: describe(error) })
      return noUsers
    }
  }

  const users = async (): Promise<ReadonlyMap<string, string>> => {
    const version = await versionOf(file)
    if (current !== undefined && current.version === version) return current.users
    if (loading === undefined || loading.version !== version) {
      const pending = { version, users: load(version) }
      loading = pending
      pending.users.then((users) => {
        if (loading === pending) {
          current = { version, users }
          loading = undefined
        }
      })
    }
    return loading.users
  }

  return {
    verify: async (name, password) => {
      try {
        const known = await users()
        const canonical = canonicalName(name)
        const encoded = canonical === undefined ? undefined : known.get(canonical)
        const matches = await verifyPassword(password, encoded ?? dummyHash)
        return matches && encoded !== undefined && password !== "" ? canonical : undefined
      } catch {
        return undefined
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Changing the file.

/** The edits in progress per file, so that two in one process do not overwrite each other. */
const edits = new Map<string, Promise<unknown>>()

const serialized = <A>(file: string, edit: () => Promise<A>): Promise<A> => {
  const key = Path.resolve(file)
  const previous = edits.get(key) ?? Promise.resolve()
  const next = previous.then(edit, edit)
  const settled = next.then(() => undefined, () => undefined)
  edits.set(key, settled)
  settled.then(() => {
    if (edits.get(key) === settled) edits.delete(key)
  })
  return next
}

const requireName = (file: string, name: string): string => {
  const lower = name.toLowerCase()
  const problem = nameProblem(lower)
  if (problem !== undefined) {
    throw new UsersError({ reason: "InvalidName", file, message: `invalid user name ${quote(name)}: ${problem}` })
  }
  return lower
}

const requirePassword = (file: string, password: string): void => {
  if (password === "") throw new UsersError({ reason: "EmptyPassword", file, message: "the password is empty" })
}

const readForEdit = async (file: string): Promise<Parsed> => {
  let text: string
  try {
    text = await Fs.readFile(file, "utf8")
  } catch (error) {
    if (errorCode(error) !== "ENOENT") {
      throw new UsersError({ reason: "Io", file, message: `cannot read ${file}: ${describe(error)}` })
    }
    text = ""
  }
  const parsed = parse(text)
  if (parsed.problems.length > 0) {
    const shown = parsed.problems.slice(0, 5).map((p) => `line ${p.line}: ${p.reason}`)
    const more = parsed.problems.length > shown.length ? [`and ${parsed.problems.length - shown.length} more`] : []
    throw new UsersError({
      reason: "FileProblems",
      file,
      message: `${file} has problems, fix them first: ${[...shown, ...more].join("; ")}`
    })
  }
  return parsed
}

const write = async (file: string, lines: ReadonlyArray<Line>): Promise<void> => {
  try {
    await Fs.mkdir(Path.dirname(file), { recursive: true })
    await Fsync.replaceFile(file, render(lines), fileMode)
  } catch (error) {
    throw new UsersError({ reason: "Io", file, message: `cannot write ${file}: ${describe(error)}` })
  }
}

/**
 * Adds user `name` (lower-cased) with `password` to `file`, creating the file (mode 0600) and
 * its directory if needed. Rejects with `UsersError` when the name is invalid, the password
 * empty, the user already there, the file has problems or cannot be read or written. Resolves
 * with the canonical name.
 */
export const addUser = (file: string, name: string, password: string): Promise<string> =>
  serialized(file, async () => {
    const canonical = requireName(file, name)
    requirePassword(file, password)
    const { lines, users } = await readForEdit(file)
    if (users.has(canonical)) {
      throw new UsersError({ reason: "UserExists", file, message: `user ${canonical} already exists in ${file}` })
    }
    const encoded = await hashPassword(password)
    await write(file, [...lines, { _tag: "User", name: canonical, encoded }])
    return canonical
  })

const requireUser = (file: string, users: ReadonlyMap<string, string>, name: string): void => {
  if (!users.has(name)) {
    throw new UsersError({ reason: "NoSuchUser", file, message: `user ${name} does not exist in ${file}` })
  }
}

/**
 * Replaces the password of user `name` in `file`. Rejects with `UsersError` when the user does
 * not exist (a missing file has no users), and as `addUser` does. Resolves with the canonical name.
 */
export const setPassword = (file: string, name: string, password: string): Promise<string> =>
  serialized(file, async () => {
    const canonical = requireName(file, name)
    requirePassword(file, password)
    const { lines, users } = await readForEdit(file)
    requireUser(file, users, canonical)
    const encoded = await hashPassword(password)
    await write(
      file,
      lines.map((line): Line => (line._tag === "User" && line.name === canonical ? { ...line, encoded } : line))
    )
    return canonical
  })

/**
 * Removes user `name` from `file`. Rejects with `UsersError` when the user does not exist (a
 * missing file has no users), the name is invalid or the file has problems or cannot be read
 * or written. Resolves with the canonical name.
 */
export const removeUser = (file: string, name: string): Promise<string> =>
  serialized(file, async () => {
    const canonical = requireName(file, name)
    const { lines, users } = await readForEdit(file)
    requireUser(file, users, canonical)
    await write(file, lines.filter((line) => !(line._tag === "User" && line.name === canonical)))
    return canonical
  })
