/**
 * Making directory entries durable. A file created, renamed or removed is only safe after a
 * crash once its directory is fsynced too; the event log, the spool and Maildir delivery all
 * depend on that.
 */
import * as Fs from "node:fs/promises"

/** fsyncs a directory, so that entries created, renamed or removed in it survive a crash. */
export const directory = async (path: string): Promise<void> => {
  const handle = await Fs.open(path, "r")
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
