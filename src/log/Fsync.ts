/**
 * Making directory entries durable. A file created, renamed or removed is only safe after a
 * crash once its directory is fsynced too; the event log, the spool and Maildir delivery all
 * depend on that.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"

/** fsyncs a directory, so that entries created, renamed or removed in it survive a crash. */
export const directory = async (path: string): Promise<void> => {
  const handle = await Fs.open(path, "r")
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** A name beside `file` that no other process or call picks, for a file about to be renamed or linked into place. */
export const temporaryName = (file: string): string =>
  `${file}.${process.pid}.${Crypto.randomBytes(6).toString("hex")}.tmp`

/** Creates `path` (which must not exist) with `content`, durable when this returns. */
export const createFile = async (path: string, content: string | Uint8Array, mode: number): Promise<void> => {
  const handle = await Fs.open(path, "wx", mode)
  try {
    await handle.writeFile(content)
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * Replaces `file` atomically with `content`: after a crash it holds either the old content or
 * the new, whole. Durable (directory included) when this returns.
 */
export const replaceFile = async (file: string, content: string | Uint8Array, mode: number): Promise<void> => {
  const temporary = temporaryName(file)
  try {
    await createFile(temporary, content, mode)
    await Fs.rename(temporary, file)
  } catch (error) {
    await Fs.rm(temporary, { force: true })
    throw error
  }
  await directory(Path.dirname(file))
}
