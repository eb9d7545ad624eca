/**
 * A process's threads as the kernel sees them: each thread's name and nice value, from
 * /proc/PID/task. A thread that ends while it is read is left out.
 */
import * as Fs from "node:fs"
import { readStat } from "./Proc.ts"

export interface Thread {
  readonly name: string
  readonly nice: number
}

const read = (pid: number | "self", tid: string): Thread | undefined => {
  const stat = readStat(`/proc/${pid}/task/${tid}/stat`)
  return stat === undefined ? undefined : { name: stat.name, nice: Number(stat.fields[16]) }
}

export const threadsOf = (pid: number | "self"): Array<Thread> =>
  Fs.readdirSync(`/proc/${pid}/task`).flatMap((tid) => read(pid, tid) ?? [])

/** libuv's thread-pool threads, by the name libuv gives them. */
export const isPool = (thread: Thread): boolean => thread.name === "libuv-worker"

/** The distinct nice values of `threads`. */
export const nices = (threads: ReadonlyArray<Thread>): Array<number> => [...new Set(threads.map((t) => t.nice))]
