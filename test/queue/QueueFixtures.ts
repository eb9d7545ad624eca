/**
 * Shared helpers of the queue tests: temporary directories on the real disk, deterministic
 * content, and file listings.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { Effect } from "effect"

/** A fresh directory, removed with everything in it when the test's scope closes. */
export const tempDirectory = (prefix: string) =>
  Effect.acquireRelease(
    Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), `postern-${prefix}-`))),
    (directory) => Effect.promise(() => Fs.rm(directory, { recursive: true, force: true }))
  )

/** `length` bytes that differ per `seed` and per position (so a misplaced record shows). */
export const content = (length: number, seed: number): Uint8Array => {
  const bytes = new Uint8Array(length)
  let state = (seed * 2654435761 + 1) >>> 0
  for (let i = 0; i < length; i++) {
    state = (state * 1103515245 + 12345) >>> 0
    bytes[i] = state >>> 24
  }
  return bytes
}

export const sha256 = (bytes: Uint8Array): string => Crypto.createHash("sha256").update(bytes).digest("hex")

export { concat } from "../support/Bytes.ts"

/** The names in a directory, sorted; empty when it does not exist. */
export const list = (directory: string): Effect.Effect<ReadonlyArray<string>> =>
  Effect.promise(() => Fs.readdir(directory).then((names) => names.sort(), () => []))

export const readFile = (path: string): Effect.Effect<Uint8Array> =>
  Effect.promise(() => Fs.readFile(path).then((buffer) => new Uint8Array(buffer)))

export const exists = (path: string): Effect.Effect<boolean> =>
  Effect.promise(() => Fs.stat(path).then(() => true, () => false))

/** Overwrites one byte of a file in place. */
export const flipByte = (path: string, offset: number): Effect.Effect<void> =>
  Effect.promise(async () => {
    const handle = await Fs.open(path, "r+")
    try {
      const byte = new Uint8Array(1)
      await handle.read(byte, 0, 1, offset)
      byte[0] = (byte[0] ?? 0) ^ 0xff
      await handle.write(byte, 0, 1, offset)
    } finally {
      await handle.close()
    }
  })

export const truncate = (path: string, length: number): Effect.Effect<void> =>
  Effect.promise(() => Fs.truncate(path, length))
