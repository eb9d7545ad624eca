/**
 * A check that reads a message while it is being received (DKIM verification, DKIM signing):
 * the session writes each content chunk as it arrives, and asks for the outcome when the message
 * has ended, so nothing is buffered whole or read back from the spool.
 */
import { PassThrough, type Readable } from "node:stream"

export interface Streamed<A> {
  readonly write: (bytes: Uint8Array) => void
  /** The message is complete: the outcome once the check has read it. */
  readonly end: () => Promise<A>
  /** The message was dropped: stop reading it (no rejection is left unhandled). */
  readonly abort: () => void
}

/** Starts `read` on the message to come; `read` settles its own failures into an outcome. */
export const start = <A>(read: (input: Readable) => Promise<A>): Streamed<A> => {
  const input = new PassThrough()
  const settled = read(input)
  return {
    write: (bytes) => void input.write(bytes),
    end: () => {
      input.end()
      return settled
    },
    abort: () => {
      input.destroy()
      settled.catch(() => undefined)
    }
  }
}
