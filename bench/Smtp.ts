/**
 * Helpers for the SMTP benchmark (`bench/run.ts`): finding and pinning Postfix's load tools,
 * starting servers and waiting for their greeting, driving `smtp-source`, holding idle
 * connections, measuring a process tree's memory, and killing every child whatever happens.
 *
 * Not part of Postern: plain Node, loopback only.
 */
import * as ChildProcess from "node:child_process"
import * as NodeFs from "node:fs"
import * as Net from "node:net"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { Schema } from "effect"

/** Why a benchmark step could not produce a number. */
export class BenchError extends Schema.TaggedError<BenchError>()("BenchError", {
  reason: Schema.Literals(["ServerExited", "StartTimeout", "LoadFailed", "Limits"]),
  message: Schema.String
}) {}

/** An error for a bench line: a BenchError's own words, else the stack. */
export const errorMessage = (error: unknown): string =>
  error instanceof BenchError ? error.message : error instanceof Error ? error.stack ?? error.message : String(error)

/** `value` to `digits` decimals, as a number for JSON. */
export const round = (value: number, digits: number) => Number(value.toFixed(digits))

// ---------------------------------------------------------------------------------------------
// Children: every process the bench starts is a process-group leader, so killing the group
// also kills what it started (smtp-source under its round loop, Postern's workers).

const live = new Set<ChildProcess.ChildProcess>()

const killGroup = (child: ChildProcess.ChildProcess, signal: NodeJS.Signals): void => {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    // The group is already gone; the direct kill covers a child that never became a leader.
    try {
      child.kill(signal)
    } catch {
      // Already exited.
    }
  }
}

/** Starts a child in its own process group and tracks it until it exits. */
export const spawnTracked = (
  command: string,
  args: ReadonlyArray<string>,
  options: ChildProcess.SpawnOptions
): ChildProcess.ChildProcess => {
  const child = ChildProcess.spawn(command, args, { ...options, detached: true })
  live.add(child)
  child.on("exit", () => live.delete(child))
  child.on("error", () => live.delete(child))
  return child
}

/** Resolves when the child has exited (at once if it already has). */
export const exited = (child: ChildProcess.ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => {
      child.once("exit", () => resolve())
      child.once("error", () => resolve())
    })

/** SIGTERM to the child's group, SIGKILL after `graceMs` if anything is still running. */
export const stop = async (child: ChildProcess.ChildProcess, graceMs: number): Promise<void> => {
  killGroup(child, "SIGTERM")
  const timer = setTimeout(() => killGroup(child, "SIGKILL"), graceMs)
  await exited(child)
  clearTimeout(timer)
  // Workers of a server whose primary exited would otherwise linger in the group.
  if (child.pid !== undefined) {
    try {
      process.kill(-child.pid, "SIGKILL")
    } catch {
      // Nothing left in the group.
    }
  }
}

let cleanupInstalled = false

/**
 * Kills every tracked child's group when the bench exits, normally, by an uncaught error or by
 * SIGINT/SIGTERM. Idempotent.
 */
export const installCleanup = (): void => {
  if (cleanupInstalled) return
  cleanupInstalled = true
  process.on("exit", () => {
    for (const child of live) killGroup(child, "SIGKILL")
  })
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => {
      for (const child of live) killGroup(child, "SIGKILL")
      process.exit(128 + (NodeOs.constants.signals[signal] ?? 0))
    })
  }
}

// ---------------------------------------------------------------------------------------------
// Tools and CPU pinning

const systemDirectories = ["/usr/sbin", "/sbin", "/usr/local/sbin"]

/** The absolute path of an executable on PATH or in the sbin directories, if any. */
export const which = (name: string): string | undefined => {
  const directories = [...(process.env["PATH"] ?? "").split(NodePath.delimiter), ...systemDirectories]
  for (const directory of directories) {
    if (directory === "") continue
    const candidate = NodePath.join(directory, name)
    try {
      NodeFs.accessSync(candidate, NodeFs.constants.X_OK)
      if (NodeFs.statSync(candidate).isFile()) return candidate
    } catch {
      // Not here.
    }
  }
  return undefined
}

/** How commands are pinned: `taskset` and the CPU for the server and for the load generator. */
export interface Pinning {
  readonly taskset: string
  readonly serverCpu: number
  readonly loadCpu: number
}

/**
 * Pins when `taskset` exists, there are at least two CPUs and the kernel lets us set an
 * affinity (some containers do not); undefined otherwise.
 */
export const detectPinning = (serverCpu: number, loadCpu: number): Pinning | undefined => {
  const taskset = which("taskset")
  if (taskset === undefined || NodeOs.availableParallelism() < 2) return undefined
  const probe = ChildProcess.spawnSync(taskset, ["-c", `${serverCpu},${loadCpu}`, "true"], { stdio: "ignore" })
  return probe.status === 0 ? { taskset, serverCpu, loadCpu } : undefined
}

/** The command line that runs `command` on `cpu`, or as it is when not pinning. */
export const onCpu = (
  pinning: Pinning | undefined,
  cpu: number,
  command: string,
  args: ReadonlyArray<string>
): readonly [string, ReadonlyArray<string>] =>
  pinning === undefined ? [command, args] : [pinning.taskset, ["-c", String(cpu), command, ...args]]

// ---------------------------------------------------------------------------------------------
// Ports and greetings

/** Listens on a port of `host` the kernel picks; the caller closes the server. */
export const listenOnAnyPort = (host: string): Promise<Net.Server> =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    server.once("error", reject)
    server.listen({ host, port: 0, exclusive: true }, () => resolve(server))
  })

const close = (server: Net.Server): Promise<void> => new Promise((resolve) => server.close(() => resolve()))

/**
 * `count` distinct ports on `host` that were free a moment ago. Each is held until all are
 * picked: picked one after the other, the kernel may hand out a port just released again, and
 * a server given the same port twice refuses to start.
 */
export const freePorts = async (
  host: string,
  count: number,
  listen: (host: string) => Promise<Net.Server> = listenOnAnyPort
): Promise<Array<number>> => {
  const servers: Array<Net.Server> = []
  try {
    for (let i = 0; i < count; i++) servers.push(await listen(host))
    return servers.map((server) => {
      const address = server.address()
      if (typeof address !== "object" || address === null || address.port <= 0) throw new Error("no port assigned")
      return address.port
    })
  } finally {
    await Promise.all(servers.map(close))
  }
}

/** A port on `host` that was free a moment ago. */
export const freePort = async (host: string): Promise<number> => {
  const [port] = await freePorts(host, 1)
  if (port === undefined) throw new Error("no port assigned")
  return port
}

/**
 * Connects and reads the server's greeting up to its last line (`220 ...`, after any `220-`
 * lines). Resolves with that line, or undefined if the connection fails, closes or times out.
 */
export const readGreeting = (host: string, port: number, timeoutMs: number): Promise<string | undefined> =>
  new Promise((resolve) => {
    const socket = Net.connect({ host, port })
    let buffered = ""
    let settled = false
    const finish = (line: string | undefined) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (line !== undefined) socket.end("QUIT\r\n")
      socket.destroySoon()
      resolve(line)
    }
    const timer = setTimeout(() => finish(undefined), timeoutMs)
    socket.setEncoding("latin1")
    socket.on("data", (chunk: string) => {
      buffered += chunk
      for (const line of buffered.split("\r\n").slice(0, -1)) {
        if (/^\d{3} /.test(line) || /^\d{3}$/.test(line)) return finish(line)
      }
      if (buffered.length > 4096) finish(buffered.slice(0, 200))
    })
    socket.on("error", () => finish(undefined))
    socket.on("close", () => finish(undefined))
  })

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The last `bytes` of a file, for error reports; empty if it cannot be read. */
export const fileTail = (file: string, bytes: number): string => {
  try {
    const size = NodeFs.statSync(file).size
    const fd = NodeFs.openSync(file, "r")
    try {
      const length = Math.min(size, bytes)
      const buffer = Buffer.alloc(length)
      NodeFs.readSync(fd, buffer, 0, length, size - length)
      return buffer.toString("utf8")
    } finally {
      NodeFs.closeSync(fd)
    }
  } catch {
    return ""
  }
}

/** How to start a server and know it is ready. */
export interface ServerOptions {
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly cwd: string
  readonly env: NodeJS.ProcessEnv
  readonly host: string
  readonly port: number
  /** Where the server's stdout and stderr go. */
  readonly logFile: string
  readonly startupTimeoutMs: number
  /** How often to probe for the greeting. */
  readonly probeIntervalMs: number
  readonly stopGraceMs: number
}

/** A server that greeted with 220. */
export interface RunningServer {
  readonly child: ChildProcess.ChildProcess
  readonly pid: number
  readonly greeting: string
  readonly startupMs: number
}

/**
 * Starts a server and waits until its listener greets with `220`. Fails with `ServerExited` if
 * the process ends first and `StartTimeout` after `startupTimeoutMs`, killing it in both cases;
 * the message carries the end of its log.
 */
export const startServer = async (options: ServerOptions): Promise<RunningServer> => {
  NodeFs.mkdirSync(NodePath.dirname(options.logFile), { recursive: true })
  const log = NodeFs.openSync(options.logFile, "w")
  const started = performance.now()
  const child = spawnTracked(options.command, options.args, {
    cwd: options.cwd,
    env: options.env,
    stdio: ["ignore", log, log]
  })
  NodeFs.closeSync(log)
  let spawnError: Error | undefined
  child.once("error", (error) => {
    spawnError = error
  })
  const tail = () => {
    const text = fileTail(options.logFile, 1500).trim()
    return text === "" ? "" : `; log ${options.logFile} ends with: ${text}`
  }
  const deadline = started + options.startupTimeoutMs
  while (performance.now() < deadline) {
    if (spawnError !== undefined) {
      throw new BenchError({ reason: "ServerExited", message: `could not start ${options.command}: ${spawnError.message}` })
    }
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new BenchError({
        reason: "ServerExited",
        message: `server exited with ${child.exitCode ?? child.signalCode} before greeting${tail()}`
      })
    }
    const greeting = await readGreeting(options.host, options.port, Math.max(100, options.probeIntervalMs * 5))
    if (greeting !== undefined && greeting.startsWith("220")) {
      if (child.pid === undefined) break
      return { child, pid: child.pid, greeting, startupMs: performance.now() - started }
    }
    if (greeting !== undefined) {
      await stop(child, options.stopGraceMs)
      throw new BenchError({ reason: "ServerExited", message: `server greeted with "${greeting}", not 220${tail()}` })
    }
    await delay(options.probeIntervalMs)
  }
  await stop(child, options.stopGraceMs)
  throw new BenchError({
    reason: "StartTimeout",
    message: `server did not greet 220 on ${options.host}:${options.port} within ${
      options.startupTimeoutMs / 1000
    } s${tail()}`
  })
}

// ---------------------------------------------------------------------------------------------
// smtp-source

/** One load run: `messages` 1 KiB-ish messages at a fixed concurrency. */
export interface LoadOptions {
  readonly smtpSource: string
  readonly pinning: Pinning | undefined
  readonly host: string
  readonly port: number
  /** Parallel SMTP sessions (smtp-source `-s`). */
  readonly concurrency: number
  /** 1: a new connection per message; more: that many messages per connection on average. */
  readonly messagesPerConnection: number
  /** Lower bound; rounded up to whole rounds. */
  readonly messages: number
  /** Payload bytes (smtp-source `-l`). */
  readonly messageBytes: number
  readonly sender: string
  readonly recipient: string
  readonly helo: string
  readonly timeLimitMs: number
}

/** What a load run achieved. */
export interface LoadResult {
  /** Messages accepted (whole rounds; all of them unless timed out). */
  readonly messages: number
  readonly seconds: number
  readonly msgsPerSec: number
  readonly rounds: number
  readonly messagesPerRound: number
  readonly timedOut: boolean
}

/**
 * How a run is cut into smtp-source invocations. smtp-source has no "messages per session"
 * option: with `-d` every session keeps sending until the run's `-m` total is used up. So `k`
 * messages per connection at concurrency `c` is a round of `-d -s c -m k*c` (each session takes
 * k on average), repeated. A connection per message (no `-d`) is cut into rounds of at least
 * 10 connections per session too, only so that a run stopped by its time limit still reports
 * how far it got.
 */
export const plan = (
  concurrency: number,
  messagesPerConnection: number,
  messages: number
): { readonly rounds: number; readonly messagesPerRound: number } => {
  const messagesPerRound = messagesPerConnection > 1
    ? concurrency * messagesPerConnection
    : Math.min(Math.max(messages, concurrency), Math.max(concurrency * 10, Math.ceil(messages / 10)))
  return { rounds: Math.max(1, Math.ceil(messages / messagesPerRound)), messagesPerRound }
}

// The loop runs in one shell so that starting each round costs a fork, not a Node spawn; it
// prints a line per finished round and stops at the first failing round with its status.
const roundLoop = "r=$1; shift; i=0; while [ \"$i\" -lt \"$r\" ]; do \"$@\" || exit $?; i=$((i+1)); echo \"$i\"; done"

/**
 * Runs smtp-source in rounds (see {@link plan}) on the load CPU. Fails with `LoadFailed` when a
 * round fails (smtp-source stops at the first rejected command); a run cut by the time limit
 * returns what it finished with `timedOut`.
 */
export const runSmtpSource = async (options: LoadOptions): Promise<LoadResult> => {
  const { messagesPerRound, rounds } = plan(options.concurrency, options.messagesPerConnection, options.messages)
  const sourceArgs = [
    "-s",
    String(options.concurrency),
    "-m",
    String(messagesPerRound),
    "-l",
    String(options.messageBytes),
    "-f",
    options.sender,
    "-t",
    options.recipient,
    "-M",
    options.helo,
    ...(options.messagesPerConnection > 1 ? ["-d"] : []),
    `${options.host}:${options.port}`
  ]
  const [command, args] = onCpu(options.pinning, options.pinning?.loadCpu ?? 0, "/bin/sh", [
    "-c",
    roundLoop,
    "sh",
    String(rounds),
    options.smtpSource,
    ...sourceArgs
  ])
  const started = performance.now()
  const child = spawnTracked(command, args, { stdio: ["ignore", "pipe", "pipe"] })
  let finishedRounds = 0
  let stderr = ""
  child.stdout?.setEncoding("utf8")
  child.stdout?.on("data", (chunk: string) => {
    finishedRounds += chunk.split("\n").length - 1
  })
  child.stderr?.setEncoding("utf8")
  child.stderr?.on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-2000)
  })
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    killGroup(child, "SIGKILL")
  }, options.timeLimitMs)
  // The clock stops at "exit"; "close" comes once stdout has given its last round's line too.
  let ended = performance.now()
  child.once("exit", () => {
    ended = performance.now()
  })
  await new Promise<void>((resolve) => {
    child.once("close", () => resolve())
    child.once("error", () => resolve())
  })
  clearTimeout(timer)
  if (!timedOut && child.exitCode !== 0) {
    throw new BenchError({
      reason: "LoadFailed",
      message: `smtp-source failed (exit ${child.exitCode ?? child.signalCode}) after ${finishedRounds} of ${rounds} rounds: ${
        stderr.trim() || "no output"
      }`
    })
  }
  const seconds = (ended - started) / 1000
  const messages = finishedRounds * messagesPerRound
  return {
    messages,
    seconds,
    msgsPerSec: seconds > 0 ? messages / seconds : 0,
    rounds: finishedRounds,
    messagesPerRound,
    timedOut
  }
}

// ---------------------------------------------------------------------------------------------
// Memory and limits

const readProc = (path: string): string | undefined => {
  try {
    return NodeFs.readFileSync(path, "utf8")
  } catch {
    return undefined
  }
}

/** The pid and its descendants, from the parent pids in /proc/<pid>/stat. */
export const processTree = (root: number): Array<number> => {
  const children = new Map<number, Array<number>>()
  for (const entry of NodeFs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const stat = readProc(`/proc/${entry}/stat`)
    if (stat === undefined) continue
    // The command name may hold spaces and parentheses: the fields start after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    const parent = Number(fields[1])
    const list = children.get(parent) ?? []
    list.push(Number(entry))
    children.set(parent, list)
  }
  const tree: Array<number> = []
  const pending = [root]
  while (pending.length > 0) {
    const pid = pending.pop()
    if (pid === undefined || tree.includes(pid)) continue
    tree.push(pid)
    pending.push(...(children.get(pid) ?? []))
  }
  return tree
}

/** Resident memory of one process in bytes (VmRSS), 0 if it is gone. */
export const rss = (pid: number): number => {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readProc(`/proc/${pid}/status`) ?? "")
  return match?.[1] === undefined ? 0 : Number(match[1]) * 1024
}

/** Resident memory of a process and all its descendants (a primary and its workers), in bytes. */
export const treeRss = (root: number): { readonly bytes: number; readonly processes: number } => {
  const pids = processTree(root)
  return { bytes: pids.reduce((sum, pid) => sum + rss(pid), 0), processes: pids.length }
}

/** This process's open-file limits, from /proc/self/limits. */
export const fileLimit = (): { readonly soft: number; readonly hard: number } => {
  const match = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readProc("/proc/self/limits") ?? "")
  const parse = (value: string | undefined) =>
    value === undefined ? 0 : value === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(value)
  return { soft: parse(match?.[1]), hard: parse(match?.[2]) }
}

/**
 * Raises this process's open-file limit (which children inherit) to at least `wanted` with
 * `prlimit`: both limits when allowed (root), else the soft one up to the hard one. Returns the
 * soft limit in force afterwards.
 */
export const raiseFileLimit = (wanted: number): number => {
  const before = fileLimit()
  if (before.soft >= wanted) return before.soft
  const prlimit = which("prlimit")
  if (prlimit !== undefined) {
    const pid = String(process.pid)
    const both = ChildProcess.spawnSync(prlimit, ["--pid", pid, `--nofile=${wanted}:${Math.max(wanted, before.hard)}`], {
      stdio: "ignore"
    })
    if (both.status !== 0 && before.hard > before.soft) {
      ChildProcess.spawnSync(prlimit, ["--pid", pid, `--nofile=${Math.min(wanted, before.hard)}:`], { stdio: "ignore" })
    }
  }
  return fileLimit().soft
}

// ---------------------------------------------------------------------------------------------
// Idle connections

/** Idle connections that were opened and greeted. */
export interface IdlePool {
  readonly sockets: Array<Net.Socket>
  readonly greeted: number
  /** Connections that got something other than 220 (a server at its limit says 421). */
  readonly refused: number
  /** Connections that failed, closed or timed out before a greeting. */
  readonly failed: number
  readonly firstProblem: string | undefined
  readonly seconds: number
}

/** How to open idle connections. */
export interface IdleOptions {
  readonly host: string
  readonly port: number
  readonly count: number
  /** Connections being opened at once; more would overflow the server's accept backlog. */
  readonly inFlight: number
  readonly greetingTimeoutMs: number
  /** Connections per local source address (the ephemeral port range is about 28,000). */
  readonly perSourceAddress: number
}

/**
 * Opens `count` connections, `inFlight` at a time, and waits for each one's greeting. The
 * sockets stay open (their later input is read and dropped) until {@link closeAll}.
 */
export const openIdle = async (options: IdleOptions): Promise<IdlePool> => {
  const started = performance.now()
  const sockets: Array<Net.Socket> = []
  let greeted = 0
  let refused = 0
  let failed = 0
  let firstProblem: string | undefined
  const note = (problem: string) => {
    firstProblem ??= problem
  }
  const openOne = (index: number) =>
    new Promise<void>((resolve) => {
      const socket = Net.connect({
        host: options.host,
        port: options.port,
        localAddress: `127.0.0.${1 + Math.floor(index / options.perSourceAddress)}`
      })
      sockets.push(socket)
      let buffered = ""
      let settled = false
      const settle = (outcome: "greeted" | "refused" | "failed", problem?: string) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        if (outcome === "greeted") greeted += 1
        else if (outcome === "refused") refused += 1
        else failed += 1
        if (problem !== undefined) note(problem)
        resolve()
      }
      const timer = setTimeout(() => settle("failed", "no greeting in time"), options.greetingTimeoutMs)
      socket.setEncoding("latin1")
      socket.on("data", (chunk: string) => {
        if (settled) return
        buffered += chunk
        const line = buffered.split("\r\n").slice(0, -1).find((l) => /^\d{3}( |$)/.test(l))
        if (line === undefined) return
        if (line.startsWith("220")) settle("greeted")
        else settle("refused", line)
      })
      socket.on("error", (error) => settle("failed", error.message))
      socket.on("close", () => settle("failed", "closed before greeting"))
    })
  let next = 0
  const worker = async () => {
    while (next < options.count) {
      const index = next
      next += 1
      await openOne(index)
    }
  }
  await Promise.all(Array.from({ length: Math.min(options.inFlight, options.count) }, worker))
  return { sockets, greeted, refused, failed, firstProblem, seconds: (performance.now() - started) / 1000 }
}

/** Sockets of a pool that are still open (a server may drop idle connections). */
export const stillOpen = (pool: IdlePool): number =>
  pool.sockets.reduce((open, socket) => (socket.readyState === "open" && !socket.destroyed ? open + 1 : open), 0)

/** Destroys every socket of a pool. */
export const closeAll = (pool: IdlePool): void => {
  for (const socket of pool.sockets) socket.destroy()
}

// ---------------------------------------------------------------------------------------------
// Maildir

/** Files in every `new` and `cur` folder under `root`: one per delivered message copy. */
export const countMaildirFiles = (root: string): number => {
  let count = 0
  const walk = (directory: string) => {
    let entries: Array<NodeFs.Dirent>
    try {
      entries = NodeFs.readdirSync(directory, { withFileTypes: true })
    } catch {
      return
    }
    const name = NodePath.basename(directory)
    for (const entry of entries) {
      if (entry.isDirectory()) walk(NodePath.join(directory, entry.name))
      else if (entry.isFile() && (name === "new" || name === "cur")) count += 1
    }
  }
  walk(root)
  return count
}
