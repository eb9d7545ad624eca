/**
 * Lowers the scheduling priority of libuv's thread pool, where the spool's and the log's
 * writes and fsyncs run.
 *
 * Each of those jobs wakes a pool thread, and the kernel lets a freshly woken thread preempt the
 * thread that was running. Where the pool shares a core with the event loop, that is the event
 * loop, several times per message: the switches and the cache they cost took about a sixth of
 * the core under load. A pool thread at a higher nice value no longer preempts the event loop
 * on waking; it runs when the loop waits or its fair share comes round. Its work is a system
 * call that mostly sleeps on the disk, so it needs little CPU, and what it loses is a little
 * latency on each commit, never the commit: the fsync still comes before the 250.
 *
 * Linux names the pool's threads `libuv-worker` and lets a thread's nice value be set by its
 * thread id; elsewhere there is nothing to do.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import { Effect } from "effect"
import { describe } from "../log/SystemError.ts"

export type Outcome =
  /** `threads` pool threads found; `changed` of them lowered, the others already as low or lower. */
  | { readonly _tag: "Lowered"; readonly threads: number; readonly changed: number; readonly nice: number }
  /** Asked for nothing (0), or not on Linux: there is nothing to do, and nothing worth saying. */
  | { readonly _tag: "Unchanged" }
  /** On Linux, but not every pool thread could be set: why, for the administrator. */
  | { readonly _tag: "Failed"; readonly reason: string }

const poolThreadName = "libuv-worker"
const tasks = "/proc/self/task"

const readName = (task: string): string | undefined => {
  try {
    return Fs.readFileSync(`${tasks}/${task}/comm`, "utf8").trim()
  } catch {
    // The thread ended between the listing and the read.
    return undefined
  }
}

/**
 * Sets every thread-pool thread of this process to `nice` (0 leaves them as they are). A thread
 * already at that nice value or a higher one (the daemon was started under `nice`) is left
 * alone: raising a priority needs privileges, and it would undo what the administrator chose.
 * The pool's threads are all started on its first job, so this is called once the daemon has
 * done file I/O (it has, once its log and spool are open).
 */
export const lowerPriority = (nice: number): Effect.Effect<Outcome> =>
  Effect.sync((): Outcome => {
    if (nice === 0 || process.platform !== "linux") return { _tag: "Unchanged" }
    let listed: Array<string>
    try {
      listed = Fs.readdirSync(tasks)
    } catch (error) {
      return { _tag: "Failed", reason: describe(error) }
    }
    let threads = 0
    let changed = 0
    const failures: Array<string> = []
    for (const task of listed) {
      if (readName(task) !== poolThreadName) continue
      threads += 1
      try {
        if (Os.getPriority(Number(task)) >= nice) continue
        Os.setPriority(Number(task), nice)
        changed += 1
      } catch (error) {
        failures.push(`thread ${task}: ${describe(error)}`)
      }
    }
    if (threads === 0) return { _tag: "Failed", reason: `no ${poolThreadName} threads found` }
    if (failures.length > 0) {
      return { _tag: "Failed", reason: `${changed} of ${threads} pool threads lowered; ${failures.join("; ")}` }
    }
    return { _tag: "Lowered", threads, changed, nice }
  })
