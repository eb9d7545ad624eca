/**
 * Session ticket keys that every worker process derives alike, without talking to the others.
 *
 * A 32-byte master secret lives in a file (mode 0600), created once by whichever process gets
 * there first. The key for a rotation period is HKDF-SHA256 of the master and the period's
 * index, so any worker resumes a session whose ticket another worker issued in the same
 * period, and a ticket stops working once its period has passed.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { Effect, Schema } from "effect"
import * as Fsync from "../log/Fsync.ts"
import { describe, errorCode, isMissing } from "../log/SystemError.ts"

/** Length of the master secret in bytes. */
export const masterLength = 32

/** Length of Node's `ticketKeys`: 16 bytes of key name, 16 of HMAC secret, 16 of AES key. */
export const keyLength = 48

/** The master secret file could not be read or created, or holds something else. */
export class TicketKeyError extends Schema.TaggedError<TicketKeyError>()("TicketKeyError", {
  file: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.file}: ${this.reason}`
  }
}

const info = new TextEncoder().encode("postern session ticket key")
const salt = new TextEncoder().encode("postern/tls/TicketKeys")

/** The index of the rotation period `now` falls in. */
export const periodIndex = (now: number, rotation: number): number => Math.floor(now / rotation)

/**
 * The ticket key of a period: 48 bytes of HKDF-SHA256 over the master, with the period index
 * (as a 64-bit big-endian integer) in the info. Same inputs, same key, in every process.
 */
export const keyFor = (master: Uint8Array, period: number): Uint8Array => {
  const counter = new Uint8Array(8)
  new DataView(counter.buffer).setBigUint64(0, BigInt(period))
  const context = new Uint8Array(info.length + counter.length)
  context.set(info)
  context.set(counter, info.length)
  return new Uint8Array(Crypto.hkdfSync("sha256", master, salt, context, keyLength))
}

const readMaster = async (file: string): Promise<Uint8Array | undefined> => {
  try {
    return new Uint8Array(await Fs.readFile(file))
  } catch (error) {
    if (isMissing(error)) return undefined
    throw error
  }
}

/**
 * Writes a fresh secret to a temporary file, makes it durable, and links it into place. A
 * link (unlike a rename) never replaces an existing file, so when two processes race the
 * loser finds the winner's secret and uses it: all workers end up with the same master.
 */
const createMaster = async (file: string): Promise<void> => {
  const directory = Path.dirname(file)
  await Fs.mkdir(directory, { recursive: true, mode: 0o700 })
  const temporary = Fsync.temporaryName(file)
  await Fsync.createFile(temporary, Crypto.randomBytes(masterLength), 0o600)
  try {
    await Fs.link(temporary, file)
  } catch (error) {
    if (errorCode(error) !== "EEXIST") throw error
  } finally {
    await Fs.rm(temporary, { force: true })
  }
  await Fsync.directory(directory)
}

/**
 * The master secret in `file`, created (with its directory) on first use. Fails when the file
 * cannot be read or created, or does not hold exactly `masterLength` bytes.
 */
export const loadOrCreate = (file: string): Effect.Effect<Uint8Array, TicketKeyError> =>
  Effect.tryPromise({
    try: async () => {
      const existing = await readMaster(file)
      if (existing !== undefined) return existing
      await createMaster(file)
      const created = await readMaster(file)
      if (created === undefined) throw new Error("vanished right after it was created")
      return created
    },
    catch: (error) => new TicketKeyError({ file, reason: describe(error) })
  }).pipe(
    Effect.filterOrFail(
      (master) => master.length === masterLength,
      (master) =>
        new TicketKeyError({ file, reason: `holds ${master.length} bytes, a ticket master secret has ${masterLength}` })
    )
  )
