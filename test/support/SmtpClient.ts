/**
 * A raw SMTP client over `node:net` for end-to-end tests that care about exact bytes: it writes
 * whatever it is given (bare LFs, NULs, pipelined groups, half a command) and parses the
 * server's replies without interpreting them, so a test sees precisely what went on the wire.
 */
import * as Net from "node:net"
import { Schema } from "effect"

/** The client could not connect, a reply did not come in time, or the connection ended early. */
export class SmtpClientError extends Schema.TaggedError<SmtpClientError>()("SmtpClientError", {
  message: Schema.String
}) {}

/** One complete SMTP reply as received. */
export interface SmtpReply {
  readonly code: number
  /** The RFC 3463 code at the start of the first line's text, if there is one. */
  readonly enhanced: string | undefined
  /** The text of each line, after the code and separator. */
  readonly lines: ReadonlyArray<string>
  /** The reply exactly as received, CRLFs included. */
  readonly raw: string
}

/** A line of the conversation: what the client wrote ("C") or the server sent ("S"). */
export interface TranscriptEntry {
  readonly from: "C" | "S"
  readonly text: string
}

export interface ConnectOptions {
  readonly host?: string
  /** The source address, e.g. "127.0.0.2" to appear as another client of the per-client limit. */
  readonly localAddress?: string
  /** Default time a reply may take, in milliseconds. */
  readonly timeout?: number
}

const enhancedPattern = /^([245]\.\d{1,3}\.\d{1,3})(?: |$)/

const replyLinePattern = /^(\d{3})([ -])(.*)$/s

const latin1 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("latin1")

const show = (text: string): string =>
  text.replace(/[\u0000-\u0009\u000b-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`)

/** A client connection. Replies are decoded as UTF-8; commands are sent byte for byte. */
export class SmtpClient {
  readonly socket: Net.Socket
  readonly transcript: Array<TranscriptEntry> = []
  /** How many `data` events the socket has delivered: a measure of how replies were batched. */
  dataEvents = 0
  /** True once the server closed (or reset) the connection. */
  closed = false
  /** The socket error, if the connection ended with one (ECONNRESET, EPIPE). */
  error: Error | undefined
  readonly #timeout: number
  #buffer: Buffer = Buffer.alloc(0)
  #wake: (() => void) | undefined

  private constructor(socket: Net.Socket, timeout: number) {
    this.socket = socket
    this.#timeout = timeout
    socket.on("data", (chunk: Buffer) => {
      this.dataEvents++
      this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk])
      this.#notify()
    })
    const ended = () => {
      this.closed = true
      this.#notify()
    }
    socket.on("end", ended)
    socket.on("close", ended)
    socket.on("error", (error) => {
      this.error = error
      ended()
    })
  }

  /** Connects to 127.0.0.1 (or `options.host`) and resolves once the TCP connection is up. */
  static connect(port: number, options: ConnectOptions = {}): Promise<SmtpClient> {
    return new Promise((resolve, reject) => {
      const socket = Net.connect({
        port,
        host: options.host ?? "127.0.0.1",
        ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress })
      })
      socket.setNoDelay(true)
      const client = new SmtpClient(socket, options.timeout ?? 5000)
      const onError = (error: Error) =>
        reject(new SmtpClientError({ message: `connect to port ${port}: ${error.message}` }))
      socket.once("error", onError)
      socket.once("connect", () => {
        socket.off("error", onError)
        resolve(client)
      })
    })
  }

  /** Connects and reads the greeting, which must be 220. */
  static async open(port: number, options: ConnectOptions = {}): Promise<SmtpClient> {
    const client = await SmtpClient.connect(port, options)
    const greeting = await client.readReply()
    if (greeting.code !== 220) {
      client.destroy()
      throw new SmtpClientError({ message: `expected a 220 greeting, got ${greeting.raw}` })
    }
    return client
  }

  /** The local port of the connection: the peer port the daemon records for this session. */
  get localPort(): number {
    return this.socket.localPort ?? 0
  }

  /**
   * Writes the bytes as they are. Resolves once they are handed to the kernel, or when the
   * connection turns out to be dead (the error is kept in `error`; a reply read will report it).
   */
  send(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : Buffer.from(data)
    this.transcript.push({ from: "C", text: bytes.length > 2048 ? `<${bytes.length} bytes>` : show(latin1(bytes)) })
    if (this.socket.destroyed || !this.socket.writable) return Promise.resolve()
    return new Promise((resolve) => {
      this.socket.write(bytes, (error) => {
        if (error !== undefined && error !== null) this.error ??= error
        resolve()
      })
    })
  }

  /** Sends one command line, adding CRLF. */
  command(line: string): Promise<void> {
    return this.send(`${line}\r\n`)
  }

  /** One complete reply (all its lines); fails after `timeout` ms or when the connection ends first. */
  async readReply(timeout: number = this.#timeout): Promise<SmtpReply> {
    const deadline = Date.now() + timeout
    while (true) {
      const reply = this.#takeReply()
      if (reply !== undefined) return reply
      if (this.closed) {
        throw new SmtpClientError({
          message: `connection closed before a complete reply${this.error === undefined ? "" : ` (${this.error.message})`}` +
            `; unparsed: ${JSON.stringify(this.#buffer.toString("utf8"))}\n${this.formatTranscript()}`
        })
      }
      const left = deadline - Date.now()
      if (left <= 0) {
        throw new SmtpClientError({
          message: `no complete reply within ${timeout} ms; unparsed: ${JSON.stringify(this.#buffer.toString("utf8"))}\n${
            this.formatTranscript()
          }`
        })
      }
      await this.#waitForInput(left)
    }
  }

  /** `n` complete replies in order. */
  async readReplies(n: number, timeout: number = this.#timeout): Promise<Array<SmtpReply>> {
    const out: Array<SmtpReply> = []
    for (let i = 0; i < n; i++) out.push(await this.readReply(timeout))
    return out
  }

  /** Sends a command line and reads its reply. */
  async request(line: string, timeout?: number): Promise<SmtpReply> {
    await this.command(line)
    return this.readReply(timeout)
  }

  /**
   * Waits for the server to close the connection. Fails if it stays open for `timeout` ms, or
   * if the server sends anything that is not yet read (it is reported, not dropped).
   */
  async expectClose(timeout: number = this.#timeout): Promise<void> {
    const deadline = Date.now() + timeout
    while (!this.closed) {
      const left = deadline - Date.now()
      if (left <= 0) {
        throw new SmtpClientError({ message: `the server kept the connection open for ${timeout} ms\n${this.formatTranscript()}` })
      }
      await this.#waitForInput(left)
    }
    if (this.#buffer.length > 0) {
      throw new SmtpClientError({
        message: `the server closed after sending more than was read: ${JSON.stringify(this.#buffer.toString("utf8"))}`
      })
    }
  }

  /** Bytes received and not yet parsed as a reply. */
  get unread(): string {
    return this.#buffer.toString("utf8")
  }

  /** Closes the connection from the client's side, without QUIT. */
  destroy(): void {
    this.socket.destroy()
  }

  /** Sends QUIT, expects 221, and waits for the close. */
  async quit(): Promise<void> {
    const reply = await this.request("QUIT")
    if (reply.code !== 221) throw new SmtpClientError({ message: `QUIT: expected 221, got ${reply.raw}` })
    await this.expectClose()
  }

  formatTranscript(): string {
    return this.transcript.map((entry) => `${entry.from}: ${entry.text.replace(/\r\n$/, "")}`).join("\n")
  }

  #notify(): void {
    const wake = this.#wake
    this.#wake = undefined
    wake?.()
  }

  #waitForInput(timeout: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = undefined
        resolve()
      }, timeout)
      this.#wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }

  /** Removes one complete reply from the buffer, if it holds one. */
  #takeReply(): SmtpReply | undefined {
    let offset = 0
    const lines: Array<string> = []
    let code: number | undefined
    while (true) {
      const lf = this.#buffer.indexOf(0x0a, offset)
      if (lf < 0) return undefined
      const line = this.#buffer.subarray(offset, lf > offset && this.#buffer[lf - 1] === 0x0d ? lf - 1 : lf).toString("utf8")
      offset = lf + 1
      const match = replyLinePattern.exec(line)
      if (match === null) {
        const raw = this.#buffer.subarray(0, offset).toString("utf8")
        this.#buffer = this.#buffer.subarray(offset)
        this.transcript.push({ from: "S", text: show(raw) })
        throw new SmtpClientError({ message: `malformed reply line ${JSON.stringify(line)}` })
      }
      const [, digits = "", separator, text = ""] = match
      const lineCode = Number(digits)
      if (code !== undefined && lineCode !== code) {
        throw new SmtpClientError({ message: `reply code changed within a reply: ${code} then ${lineCode}` })
      }
      code = lineCode
      lines.push(text)
      if (separator === " ") break
    }
    const raw = this.#buffer.subarray(0, offset).toString("utf8")
    this.#buffer = this.#buffer.subarray(offset)
    this.transcript.push({ from: "S", text: show(raw) })
    if (code === undefined) throw new SmtpClientError({ message: `empty reply ${JSON.stringify(raw)}` })
    const enhanced = enhancedPattern.exec(lines[0] ?? "")?.[1]
    return { code, enhanced, lines, raw }
  }
}

/** "250 2.0.0" style summary of a reply, for assertion messages. */
export const describeReply = (reply: SmtpReply): string => reply.raw.replace(/\r\n$/, "").replace(/\r\n/g, " | ")

/** The queue id from "250 2.0.0 Ok: queued as ID". */
export const queueIdOf = (reply: SmtpReply): string | undefined => /queued as (\S+)/.exec(reply.lines.join(" "))?.[1]

export interface Message {
  readonly from: string
  readonly to: ReadonlyArray<string>
  /** The content with CRLF line endings, ending in CRLF, not dot-stuffed. */
  readonly content: string
  /** Extra MAIL parameters, e.g. "SMTPUTF8". */
  readonly mailParameters?: string
  readonly helo?: string
}

/** RFC 5321 4.5.2 transparency: a line starting with "." gets another one. */
export const dotStuff = (content: string): string => content.replace(/(^|\r\n)\./g, "$1..")

/**
 * One whole transaction on a fresh connection (EHLO, MAIL, RCPT..., DATA, QUIT), each step
 * checked: resolves with the final reply to the content, whatever its code.
 */
export const sendMessage = async (port: number, message: Message, options: ConnectOptions = {}): Promise<SmtpReply> => {
  const client = await SmtpClient.open(port, options)
  try {
    const expect = (reply: SmtpReply, code: number, what: string) => {
      if (reply.code !== code) {
        throw new SmtpClientError({ message: `${what}: expected ${code}, got ${describeReply(reply)}\n${client.formatTranscript()}` })
      }
    }
    expect(await client.request(`EHLO ${message.helo ?? "client.test"}`), 250, "EHLO")
    const parameters = message.mailParameters === undefined ? "" : ` ${message.mailParameters}`
    expect(await client.request(`MAIL FROM:<${message.from}>${parameters}`), 250, "MAIL")
    for (const to of message.to) expect(await client.request(`RCPT TO:<${to}>`), 250, `RCPT ${to}`)
    expect(await client.request("DATA"), 354, "DATA")
    await client.send(`${dotStuff(message.content)}.\r\n`)
    const final = await client.readReply()
    await client.quit()
    return final
  } finally {
    client.destroy()
  }
}
