/**
 * A DNS zone of the tests' own, served over UDP on loopback (RFC 1035 wire format, just what
 * SPF and DKIM lookups ask: A, AAAA, TXT, MX). Unknown names get NXDOMAIN, a known name without
 * records of the asked type an empty NOERROR. Every question is counted, so tests can tell
 * whether the daemon (or a tool) asked. Nothing ever leaves the machine. There is no TCP: an
 * answer is never truncated, and the largest the tests serve (an RSA-2048 DKIM key) is under
 * 512 bytes anyway.
 */
import * as Dgram from "node:dgram"

export interface Zone {
  readonly [name: string]: {
    readonly A?: ReadonlyArray<string>
    readonly AAAA?: ReadonlyArray<string>
    readonly TXT?: ReadonlyArray<string>
    readonly MX?: ReadonlyArray<{ readonly priority: number; readonly exchange: string }>
  }
}

export interface DnsServer {
  readonly address: string
  readonly questions: Array<{ readonly name: string; readonly type: string }>
  /** Stops answering; idempotent. */
  readonly close: () => Promise<void>
}

const types: Readonly<Record<number, "A" | "AAAA" | "TXT" | "MX">> = { 1: "A", 28: "AAAA", 16: "TXT", 15: "MX" }

const encodeName = (name: string): Buffer =>
  Buffer.concat([...name.split(".").filter((l) => l !== "").map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0])])

const readName = (message: Buffer, offset: number): { name: string; end: number } => {
  const labels: Array<string> = []
  let at = offset
  for (;;) {
    const length = message[at] ?? 0
    if (length === 0) return { name: labels.join("."), end: at + 1 }
    labels.push(message.subarray(at + 1, at + 1 + length).toString())
    at += 1 + length
  }
}

const rdataOf = (type: "A" | "AAAA" | "TXT" | "MX", value: string | { readonly priority: number; readonly exchange: string }): Buffer => {
  if (typeof value !== "string") {
    const priority = Buffer.alloc(2)
    priority.writeUInt16BE(value.priority)
    return Buffer.concat([priority, encodeName(value.exchange)])
  }
  switch (type) {
    case "A":
      return Buffer.from(value.split(".").map(Number))
    case "AAAA": {
      const [head = "", tail = ""] = value.split("::")
      const left = head === "" ? [] : head.split(":")
      const right = tail === "" ? [] : tail.split(":")
      const groups = value.includes("::") ? [...left, ...Array(8 - left.length - right.length).fill("0"), ...right] : value.split(":")
      const bytes = Buffer.alloc(16)
      groups.forEach((g, i) => bytes.writeUInt16BE(parseInt(g, 16), i * 2))
      return bytes
    }
    case "TXT": {
      const chunks: Array<Buffer> = []
      for (let i = 0; i < value.length || i === 0; i += 255) {
        const part = Buffer.from(value.slice(i, i + 255))
        chunks.push(Buffer.from([part.length]), part)
      }
      return Buffer.concat(chunks)
    }
    case "MX":
      return Buffer.alloc(0)
  }
}

const answer = (query: Buffer, zone: Zone, questions: DnsServer["questions"]): Buffer => {
  const id = query.subarray(0, 2)
  const { name, end } = readName(query, 12)
  const qtype = query.readUInt16BE(end)
  const type = types[qtype]
  questions.push({ name, type: type ?? String(qtype) })
  const entry = zone[name.toLowerCase()]
  const values: ReadonlyArray<string | { readonly priority: number; readonly exchange: string }> = entry === undefined || type === undefined ? [] : (entry[type] ?? [])
  const header = Buffer.alloc(12)
  id.copy(header, 0)
  header.writeUInt16BE(0x8180 | (entry === undefined ? 3 : 0), 2)
  header.writeUInt16BE(1, 4)
  header.writeUInt16BE(values.length, 6)
  const question = query.subarray(12, end + 4)
  const records = values.map((value) => {
    const rdata = rdataOf(type ?? "A", value)
    const fixed = Buffer.alloc(12)
    fixed.writeUInt16BE(0xc00c, 0)
    fixed.writeUInt16BE(qtype, 2)
    fixed.writeUInt16BE(1, 4)
    fixed.writeUInt32BE(60, 6)
    fixed.writeUInt16BE(rdata.length, 10)
    return Buffer.concat([fixed, rdata])
  })
  return Buffer.concat([header, question, ...records])
}

export interface ServeOptions {
  /** The loopback IPv4 address to listen on; 127.0.0.1 by default. */
  readonly host?: string
  /**
   * The UDP port; a free one by default. Port 53 (root only) serves tools that ask libc's
   * resolver: give such a test an address of its own in 127.0.0.0/8, so files never collide.
   */
  readonly port?: number
}

/** Serves `zone` on loopback over UDP (127.0.0.1 at a free port by default); `address` is "HOST:PORT". */
export const serveZone = (zone: Zone, options: ServeOptions = {}): Promise<DnsServer> =>
  new Promise((resolve, reject) => {
    const host = options.host ?? "127.0.0.1"
    if (!host.startsWith("127.")) {
      reject(new Error(`serveZone: ${host} is not a loopback address`))
      return
    }
    const socket = Dgram.createSocket("udp4")
    const questions: DnsServer["questions"] = []
    socket.on("message", (message, remote) => {
      try {
        socket.send(answer(message, zone, questions), remote.port, remote.address)
      } catch {
        // A malformed question gets no answer, as from a real server.
      }
    })
    socket.once("error", reject)
    let closed: Promise<void> | undefined
    socket.bind(options.port ?? 0, host, () => {
      const { port } = socket.address()
      resolve({
        address: `${host}:${port}`,
        questions,
        // Idempotent: a test may stop the server early, the suite's cleanup stops it again.
        close: () => (closed ??= new Promise((done) => socket.close(() => done())))
      })
    })
  })
