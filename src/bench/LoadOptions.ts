/**
 * The settings of one `postern bench` run, their defaults, and the parsing of `HOST:PORT`.
 * Pure: the CLI fills these in and the load generator and its workers read them (they cross to
 * the workers by structured clone, so they are plain data).
 */

/** How the connection is encrypted: not at all, STARTTLS after EHLO, or TLS from the first byte. */
export type TlsMode = "none" | "starttls" | "implicit"

/** The TLS versions the client may offer. */
export type TlsVersion = "TLSv1.2" | "TLSv1.3"

/** One run's settings. */
export interface LoadOptions {
  readonly host: string
  readonly port: number
  readonly tls: TlsMode
  /** Connections open at once, over all threads. */
  readonly concurrency: number
  /** How long new connections and messages are started; those under way then finish. */
  readonly durationMs: number
  /** Messages per connection; 0 for handshakes only (EHLO, STARTTLS, EHLO, QUIT). */
  readonly messagesPerConnection: number
  /** Message size in bytes (headers and body, before dot-stuffing). */
  readonly size: number
  /** SNI name; none sends no SNI. */
  readonly servername: string | undefined
  /** Worker threads (each an event loop with its share of the connections). */
  readonly threads: number
  /** Offer the session of a previous connection (same thread) to measure resumed handshakes. */
  readonly resume: boolean
  readonly from: string
  readonly to: string
  readonly ehlo: string
  /** PEM of the CAs to verify the server against; none means no verification. */
  readonly ca: string | undefined
  readonly minVersion: TlsVersion
  readonly maxVersion: TlsVersion
  /** Key exchange groups to offer, colon-separated (OpenSSL names); none means Node's default. */
  readonly groups: string | undefined
  /** A connection with no progress for this long fails with "timeout". */
  readonly timeoutMs: number
  /** Pause after a failed connection before the next one, so a dead target is not spun on. */
  readonly errorBackoffMs: number
  /** How often workers report their counters (and the progress line is printed). */
  readonly progressIntervalMs: number
}

/** Defaults for everything a target does not decide. */
export const defaults = {
  tls: "starttls",
  concurrency: 20,
  durationMs: 10_000,
  messagesPerConnection: 1,
  size: 1024,
  resume: false,
  from: "bench@postern.test",
  to: "bench@discard.test",
  ehlo: "bench.postern.test",
  minVersion: "TLSv1.2",
  maxVersion: "TLSv1.3",
  timeoutMs: 10_000,
  errorBackoffMs: 50,
  progressIntervalMs: 1000
} as const

/**
 * `HOST:PORT`, `[IPv6]:PORT`; undefined when it is neither. The host is kept as written (names
 * are resolved by the socket layer).
 */
export const parseTarget = (target: string): { readonly host: string; readonly port: number } | undefined => {
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(target) ?? /^([^:\s]+):(\d+)$/.exec(target)
  if (match === null) return undefined
  const host = match[1]
  const port = Number(match[2])
  if (host === undefined || !Number.isInteger(port) || port < 1 || port > 65535) return undefined
  return { host, port }
}

const isIp = (host: string): boolean => /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.includes(":")

/** The SNI name to send when none is given: the target host if it is a name, none for an address. */
export const defaultServername = (host: string): string | undefined => isIp(host) ? undefined : host

/** Problems with a set of options, as sentences; empty when the run can start. */
export const problems = (options: LoadOptions): Array<string> => {
  const out: Array<string> = []
  const positiveInt = (name: string, value: number) => {
    if (!Number.isInteger(value) || value < 1) out.push(`${name} must be a positive integer, got ${value}`)
  }
  positiveInt("--concurrency", options.concurrency)
  positiveInt("--threads", options.threads)
  if (!Number.isInteger(options.messagesPerConnection) || options.messagesPerConnection < 0) {
    out.push(`--messages-per-connection must be an integer of at least 0, got ${options.messagesPerConnection}`)
  }
  if (!Number.isInteger(options.size) || options.size < 0) out.push(`--size must be an integer of at least 0, got ${options.size}`)
  if (!(options.durationMs > 0)) out.push(`--duration must be more than 0 seconds`)
  if (!(options.timeoutMs > 0)) out.push(`--timeout must be more than 0 seconds`)
  if (options.minVersion === "TLSv1.3" && options.maxVersion === "TLSv1.2") out.push("the minimum TLS version is above the maximum")
  if (options.tls === "none" && options.resume) out.push("--resume needs --tls starttls or implicit")
  for (const [name, address] of [["--from", options.from], ["--to", options.to]] as const) {
    if (!/^[^\s<>]*@[^\s<>@]+$/.test(address)) out.push(`${name} must be an address like user@example.org, got "${address}"`)
  }
  return out
}
