/**
 * The real daemon for end-to-end tests: `node src/main.ts serve` in a child process, on free
 * loopback ports, with its own temporary state directory, and the means to stop it, kill it
 * hard (primary and workers at once), start it again on the same state, run the replay CLI
 * against its log and look into its Maildirs.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, Schema } from "effect"
import type * as Config from "../../src/config/Config.ts"
import type * as Event from "../../src/log/Event.ts"
import * as LogReader from "../../src/log/LogReader.ts"
import { readStat } from "./Proc.ts"
import { sendMessage, SmtpClient } from "./SmtpClient.ts"

/** The daemon did not come up, or a CLI run did not finish in time. */
export class DaemonError extends Schema.TaggedError<DaemonError>()("DaemonError", {
  message: Schema.String
}) {}

/** The repository root: the daemon runs with it as its working directory. */
export const repoRoot = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "../..")

/** A listener added to the two default ones; its port is picked for it. */
export interface ExtraListener {
  readonly role: "smtp" | "submission" | "submissions"
  /** The STARTTLS level of an smtp or submission listener; the role's default when left out. */
  readonly tls?: "none" | "may" | "encrypt"
  readonly proxyProtocol?: { readonly trustedNetworks: ReadonlyArray<string> }
}

type ConfigInput = Config.ConfigInput

/** Settings that replace the test defaults, at the top level of the configuration file. */
export type Overrides =
  & Partial<Omit<ConfigInput, "listeners" | "stateDirectory" | "localDomains" | "hostname">>
  & {
    readonly extraListeners?: ReadonlyArray<ExtraListener>
    /**
     * TypeScript source of the `policy` setting (rules are functions, so they cannot go through
     * JSON); the rule helpers of "postern" are in scope.
     */
    readonly policySource?: string
    /** How long to wait for the greeting and the banner, in milliseconds (default 20 s). */
    readonly startTimeout?: number
  }

export interface CliResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

export interface Ports {
  readonly smtp: number
  readonly submission: number
  /** The ports of `extraListeners`, in order. */
  readonly extra: ReadonlyArray<number>
}

export interface Daemon {
  readonly stateDir: string
  readonly configFile: string
  readonly logDir: string
  readonly mailRoot: string
  readonly ports: Ports
  /** The primary's pid (changes at restart). */
  readonly pid: () => number
  /** The pids of the primary's children (the cluster workers). */
  readonly workerPids: () => Array<number>
  /** Everything the current primary (and its workers) wrote so far. */
  readonly output: () => { readonly stdout: string; readonly stderr: string }
  /** The delivered files of a mailbox (Maildir `new` and `cur`), as absolute paths, sorted. */
  readonly maildir: (domain: string, user: string) => Array<string>
  /** SIGTERM to the primary; resolves with its exit code once it has exited (null: killed by a signal). */
  readonly stop: (timeout?: number) => Promise<number | null>
  /** SIGKILL to the primary and every worker at the same moment; resolves once all are gone. */
  readonly kill9: () => Promise<void>
  /** Starts the daemon again on the same configuration and state; it must not be running. */
  readonly restart: () => Promise<void>
  /** Runs `postern replay <args>` and collects its output. */
  readonly replay: (args: ReadonlyArray<string>) => Promise<CliResult>
  /** Every event of the log, read in this process (faster than the CLI for many checks). */
  readonly readLog: () => Promise<Array<Event.Event>>
  /** The events of the session whose client connected from `address:port`. */
  readonly sessionEvents: (port: number, address?: string) => Promise<Array<Event.Event>>
  /** Kills whatever is still running and removes the state directory. Safe to call twice. */
  readonly dispose: () => Promise<void>
}

const running = new Set<ChildProcess.ChildProcess>()

// A test worker that dies must not leave daemons behind holding ports.
process.on("exit", () => {
  for (const child of running) {
    const pid = child.pid
    if (pid === undefined) continue
    for (const worker of childPids(pid)) killQuietly(worker, "SIGKILL")
    killQuietly(pid, "SIGKILL")
  }
})

const killQuietly = (pid: number, signal: NodeJS.Signals): void => {
  try {
    process.kill(pid, signal)
  } catch {
    // Already gone.
  }
}

/** The direct children of a process, from /proc (no pgrep needed). */
export const childPids = (pid: number): Array<number> => {
  const out: Array<number> = []
  let entries: Array<string>
  try {
    entries = Fs.readdirSync("/proc")
  } catch {
    return out
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    // A process that ended while we looked has no stat.
    if (Number(readStat(`/proc/${entry}/stat`)?.fields[1]) === pid) out.push(Number(entry))
  }
  return out
}

/** True while the process exists and is not a zombie. */
const alive = (pid: number): boolean => {
  const state = readStat(`/proc/${pid}/stat`)?.fields[0]
  return state !== undefined && state !== "Z" && state !== "X"
}

/** Resident set size of a process in bytes, from /proc/PID/status. */
export const rssOf = (pid: number): number => {
  const status = Fs.readFileSync(`/proc/${pid}/status`, "utf8")
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1]
  return kb === undefined ? 0 : Number(kb) * 1024
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Distinct free TCP ports on 127.0.0.1 (held together while picking, so they differ). */
export const freePorts = async (count: number): Promise<Array<number>> => {
  const servers: Array<Net.Server> = []
  const ports: Array<number> = []
  try {
    for (let i = 0; i < count; i++) {
      const server = Net.createServer()
      servers.push(server)
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject)
        server.listen({ port: 0, host: "127.0.0.1", exclusive: true }, () => resolve())
      })
      const address = server.address()
      if (typeof address !== "object" || address === null) throw new DaemonError({ message: "no port bound" })
      ports.push(address.port)
    }
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))))
  }
  return ports
}

const childEnv = (): NodeJS.ProcessEnv => {
  const env = { ...process.env }
  // Whatever the test runner injects into Node is not for the daemon.
  delete env["NODE_OPTIONS"]
  return env
}

const tail = (text: string, max = 8000): string => (text.length > max ? `…${text.slice(-max)}` : text)

/**
 * Runs `node src/main.ts <args>` to completion (killed after `timeout` ms), with `input` on its
 * standard input when given (closed right after).
 */
export const runPostern = (args: ReadonlyArray<string>, timeout = 30_000, input?: string): Promise<CliResult> =>
  new Promise((resolve, reject) => {
    const child = ChildProcess.spawn(process.execPath, ["src/main.ts", ...args], {
      cwd: repoRoot,
      env: childEnv(),
      stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"]
    })
    if (input !== undefined) {
      child.stdin?.on("error", () => undefined)
      child.stdin?.end(input)
    }
    let stdout = ""
    let stderr = ""
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new DaemonError({ message: `postern ${args.join(" ")} did not finish within ${timeout} ms\n${tail(stderr)}` }))
    }, timeout)
    child.on("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })

const baseConfig = (stateDir: string, ports: ReadonlyArray<number>, overrides: Overrides): Record<string, unknown> => {
  const { extraListeners = [], startTimeout: _startTimeout, policySource: _policySource, ...rest } = overrides
  return {
    hostname: "mx.postern.test",
    listeners: [
      { address: "127.0.0.1", port: ports[0], role: "smtp" },
      { address: "127.0.0.1", port: ports[1], role: "submission" },
      ...extraListeners.map((listener, i) => ({ address: "127.0.0.1", port: ports[i + 2], ...listener }))
    ],
    stateDirectory: stateDir,
    localDomains: [
      { domain: "example.test", users: ["alice", "bob"], transport: "maildir" },
      { domain: "catchall.test", users: "*", transport: "maildir" },
      { domain: "sink.test", users: "*", transport: "discard" }
    ],
    workers: 1,
    ...rest
  }
}

const ruleHelpers = "accept, acceptRelay, because, deny, disconnect, inDomain, inNetwork, networks, next, quarantine, rateLimit, relay, requireTls, rule, spf, dkimSign, dkimVerify, dmarc, tempfail, withHeaders"

const configSource = (config: Record<string, unknown>, policySource: string | undefined): string =>
  policySource === undefined
    ? `export default ${JSON.stringify(config, null, 2)}\n`
    : `import { defineConfig, ${ruleHelpers} } from "postern"\n\n` +
      `export default defineConfig({\n  ...${JSON.stringify(config, null, 2)},\n  policy: ${policySource}\n})\n`

/** Connects, reads a 220 greeting and QUITs; false when nothing answers yet. */
const greets = async (port: number): Promise<boolean> => {
  let client: SmtpClient | undefined
  try {
    client = await SmtpClient.connect(port, { timeout: 2000 })
    const greeting = await client.readReply()
    if (greeting.code !== 220) return false
    await client.quit()
    return true
  } catch {
    return false
  } finally {
    client?.destroy()
  }
}

/** Starts a daemon with the test configuration plus `overrides`, and waits until it serves. */
export const startDaemon = async (overrides: Overrides = {}): Promise<Daemon> => {
  const stateDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "postern-e2e-"))
  const extraCount = overrides.extraListeners?.length ?? 0
  const picked = await freePorts(2 + extraCount)
  const ports: Ports = {
    smtp: picked[0] ?? 0,
    submission: picked[1] ?? 0,
    extra: picked.slice(2)
  }
  const configFile = Path.join(stateDir, "postern.config.ts")
  Fs.writeFileSync(configFile, configSource(baseConfig(stateDir, picked, overrides), overrides.policySource))
  const startTimeout = overrides.startTimeout ?? 20_000

  let child: ChildProcess.ChildProcess | undefined
  let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> = Promise.resolve({ code: null, signal: null })
  let stdout = ""
  let stderr = ""

  const spawn = async (): Promise<void> => {
    stdout = ""
    stderr = ""
    const proc = ChildProcess.spawn(process.execPath, ["src/main.ts", "serve", "--config", configFile], {
      cwd: repoRoot,
      env: childEnv(),
      stdio: ["ignore", "pipe", "pipe"]
    })
    child = proc
    running.add(proc)
    proc.stdout?.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    proc.stderr?.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    let hasExited = false
    exited = new Promise((resolve) => {
      proc.on("exit", (code, signal) => {
        hasExited = true
        running.delete(proc)
        resolve({ code, signal })
      })
    })
    const deadline = Date.now() + startTimeout
    while (true) {
      if (hasExited) {
        const { code, signal } = await exited
        throw new DaemonError({
          message: `the daemon exited during start (${signal ?? code})\nstdout:\n${tail(stdout)}\nstderr:\n${tail(stderr)}`
        })
      }
      // The primary prints its banner once every worker listens.
      if (stdout.includes("Postern serving as") && (await greets(ports.smtp))) return
      if (Date.now() > deadline) {
        await killAll()
        throw new DaemonError({
          message: `the daemon did not greet on port ${ports.smtp} with its banner printed within ${startTimeout} ms\n` +
            `stdout:\n${tail(stdout)}\nstderr:\n${tail(stderr)}`
        })
      }
      await sleep(100)
    }
  }

  const isRunning = (): boolean => child !== undefined && running.has(child)

  const killAll = async (): Promise<void> => {
    const proc = child
    const pid = proc?.pid
    if (proc === undefined || pid === undefined || !running.has(proc)) return
    const pids = [pid, ...childPids(pid)]
    for (const p of pids) killQuietly(p, "SIGKILL")
    await exited
    const deadline = Date.now() + 5000
    while (pids.some(alive)) {
      if (Date.now() > deadline) throw new DaemonError({ message: `processes survived SIGKILL: ${pids.filter(alive).join(" ")}` })
      await sleep(20)
    }
  }

  const daemon: Daemon = {
    stateDir,
    configFile,
    logDir: Path.join(stateDir, "log"),
    mailRoot: Path.join(stateDir, "mail"),
    ports,
    pid: () => child?.pid ?? 0,
    workerPids: () => (child?.pid === undefined ? [] : childPids(child.pid)),
    output: () => ({ stdout, stderr }),
    maildir: (domain, user) => {
      const files: Array<string> = []
      for (const sub of ["new", "cur"]) {
        const dir = Path.join(stateDir, "mail", domain, user, sub)
        if (!Fs.existsSync(dir)) continue
        for (const name of Fs.readdirSync(dir)) files.push(Path.join(dir, name))
      }
      return files.sort()
    },
    stop: async (timeout = 40_000) => {
      const proc = child
      if (proc === undefined || !isRunning()) throw new DaemonError({ message: "the daemon is not running" })
      proc.kill("SIGTERM")
      const result = await Promise.race([exited, sleep(timeout).then(() => undefined)])
      if (result === undefined) {
        await killAll()
        throw new DaemonError({ message: `the daemon did not exit within ${timeout} ms of SIGTERM\nstderr:\n${tail(stderr)}` })
      }
      return result.code
    },
    kill9: killAll,
    restart: async () => {
      if (isRunning()) throw new DaemonError({ message: "restart: the daemon is still running" })
      await spawn()
    },
    replay: (args) => runPostern(["replay", ...args]),
    readLog: () => readLog(Path.join(stateDir, "log")),
    sessionEvents: async (port, address = "127.0.0.1") => {
      const events = await readLog(Path.join(stateDir, "log"))
      const opened = events.find((e) =>
        e._tag === "SessionOpened" && e.peer.port === port && e.peer.address === address
      )
      if (opened === undefined || !("session" in opened)) return []
      return events.filter((e) => "session" in e && e.session === opened.session)
    },
    dispose: async () => {
      await killAll()
      if (process.env["POSTERN_KEEP_STATE"] === undefined) Fs.rmSync(stateDir, { recursive: true, force: true })
    }
  }

  try {
    await spawn()
  } catch (error) {
    await daemon.dispose()
    throw error
  }
  return daemon
}

/** Every event under a log directory, all partitions merged by time. */
export const readLog = (directory: string): Promise<Array<Event.Event>> =>
  Effect.runPromise(LogReader.readAll(directory)).then((read) => read.entries.map((entry) => entry.event))

/** Polls until `check` gives a value other than undefined, or fails after `timeout` ms. */
export const waitFor = async <A>(
  what: string,
  check: () => A | undefined | Promise<A | undefined>,
  timeout = 10_000,
  interval = 50
): Promise<A> => {
  const deadline = Date.now() + timeout
  while (true) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new DaemonError({ message: `timed out after ${timeout} ms waiting for ${what}` })
    await sleep(interval)
  }
}

/**
 * The last event of the log that `matches`, once there is one: the log is written a few
 * milliseconds after the reply that follows it, later under load.
 */
export const waitForEvent = async <E extends Event.Event>(
  logDir: string,
  what: string,
  matches: (event: Event.Event) => event is E,
  timeout = 10_000
): Promise<E> => waitFor(what, async () => (await readLog(logDir)).filter(matches).at(-1), timeout)

/** The text of every delivered file of a mailbox. */
export const readMailbox = (daemon: Daemon, domain: string, user: string): Array<{ readonly file: string; readonly text: string }> =>
  daemon.maildir(domain, user).flatMap((file) => {
    try {
      return [{ file, text: Fs.readFileSync(file, "utf8") }]
    } catch {
      return []
    }
  })

/** Waits until a delivered file of the mailbox contains `token`, and returns its text. */
export const waitForMail = (daemon: Daemon, domain: string, user: string, token: string, timeout = 10_000) =>
  waitFor(
    `a message containing ${token} in ${domain}/${user}`,
    () => readMailbox(daemon, domain, user).find((m) => m.text.includes(token)),
    timeout
  )

/** Parses `postern replay --json` output: one JSON value per non-empty line. */
export const jsonLines = (stdout: string): Array<Record<string, unknown>> =>
  stdout.split("\n").filter((line) => line.trim().length > 0).map((line) => {
    const value: unknown = JSON.parse(line)
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new DaemonError({ message: `not a JSON object: ${line}` })
    }
    return value as Record<string, unknown>
  })

let tokens = 0

/** A token unique to this test run, to find one message among all delivered files. */
export const uniqueToken = (prefix: string): string =>
  `${prefix}-${process.pid}-${Date.now().toString(36)}-${(tokens++).toString(36)}`

/**
 * A fresh connection still delivers: one message to alice@example.test, answered 250 and then
 * found in her Maildir. Used after every hostile input to show the daemon survived it.
 */
export const assertStillDelivers = async (daemon: Daemon): Promise<void> => {
  const token = uniqueToken("alive")
  const reply = await sendMessage(daemon.ports.smtp, {
    from: "sender@client.test",
    to: ["alice@example.test"],
    content: `Subject: ${token}\r\n\r\n${token}\r\n`
  })
  if (reply.code !== 250) throw new DaemonError({ message: `fresh delivery: expected 250, got ${reply.raw}` })
  await waitForMail(daemon, "example.test", "alice", token)
}
