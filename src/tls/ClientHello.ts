/**
 * The server name (SNI, RFC 6066) a client asks for in its ClientHello, read from the first TLS
 * record. Node reports no name for a resumed TLS 1.2 session (OpenSSL keeps none in it), yet
 * the name decides which certificate the session belongs to; reading it from the wire is the
 * one way to know. Pure: bytes in, a name or a reason out.
 */

/** How many bytes the first record needs, or undefined until its 5-byte header is there. */
export const recordLength = (bytes: Uint8Array): number | undefined => {
  if (bytes.length < 5) return undefined
  return 5 + (((bytes[3] ?? 0) << 8) | (bytes[4] ?? 0))
}

export type Peek =
  | { readonly _tag: "NeedMore" }
  /** A ClientHello; `serverName` is undefined when it carries no host name. */
  | { readonly _tag: "ClientHello"; readonly serverName: string | undefined }
  /** Not a ClientHello in a handshake record: the handshake will fail on its own. */
  | { readonly _tag: "NotClientHello" }

const HANDSHAKE_RECORD = 0x16
const CLIENT_HELLO = 0x01
const SERVER_NAME_EXTENSION = 0x0000
const HOST_NAME = 0x00

/** A cursor over a byte range that refuses to read past its end. */
class Reader {
  readonly #bytes: Uint8Array
  #pos: number
  readonly #end: number
  constructor(bytes: Uint8Array, start: number, end: number) {
    this.#bytes = bytes
    this.#pos = start
    this.#end = end
  }
  get remaining(): number {
    return this.#end - this.#pos
  }
  u8(): number | undefined {
    if (this.remaining < 1) return undefined
    return this.#bytes[this.#pos++]
  }
  u16(): number | undefined {
    const high = this.u8()
    const low = this.u8()
    return high === undefined || low === undefined ? undefined : (high << 8) | low
  }
  u24(): number | undefined {
    const high = this.u8()
    const rest = this.u16()
    return high === undefined || rest === undefined ? undefined : (high << 16) | rest
  }
  skip(n: number): boolean {
    if (n > this.remaining) return false
    this.#pos += n
    return true
  }
  /** A reader over the next `n` bytes, which this one skips. */
  sub(n: number): Reader | undefined {
    if (n > this.remaining) return undefined
    const inner = new Reader(this.#bytes, this.#pos, this.#pos + n)
    this.#pos += n
    return inner
  }
}

const ascii = new TextDecoder("ascii", { fatal: false })

const serverNameOf = (extension: Reader): string | undefined => {
  const listLength = extension.u16()
  const list = listLength === undefined ? undefined : extension.sub(listLength)
  while (list !== undefined && list.remaining > 0) {
    const type = list.u8()
    const length = list.u16()
    if (type === undefined || length === undefined) return undefined
    const name = list.sub(length)
    if (name === undefined) return undefined
    if (type === HOST_NAME) return readAll(name)
  }
  return undefined
}

const readAll = (reader: Reader): string => {
  const out: Array<number> = []
  for (let byte = reader.u8(); byte !== undefined; byte = reader.u8()) out.push(byte)
  return ascii.decode(new Uint8Array(out)).toLowerCase()
}

/** Reads the first record of a connection's TLS bytes. */
export const peek = (bytes: Uint8Array): Peek => {
  const needed = recordLength(bytes)
  if (needed === undefined) return { _tag: "NeedMore" }
  if (bytes[0] !== HANDSHAKE_RECORD) return { _tag: "NotClientHello" }
  if (bytes.length < needed) return { _tag: "NeedMore" }
  const record = new Reader(bytes, 5, needed)
  if (record.u8() !== CLIENT_HELLO) return { _tag: "NotClientHello" }
  const length = record.u24()
  // A ClientHello larger than its first record: its name may be in the next one, which this
  // does not read (Node then reports the name itself for a full handshake).
  const hello = length === undefined ? undefined : record.sub(Math.min(length, record.remaining))
  if (hello === undefined) return { _tag: "NotClientHello" }
  if (!hello.skip(2 + 32)) return { _tag: "ClientHello", serverName: undefined }
  const sessionId = hello.u8()
  if (sessionId === undefined || !hello.skip(sessionId)) return { _tag: "ClientHello", serverName: undefined }
  const suites = hello.u16()
  if (suites === undefined || !hello.skip(suites)) return { _tag: "ClientHello", serverName: undefined }
  const compression = hello.u8()
  if (compression === undefined || !hello.skip(compression)) return { _tag: "ClientHello", serverName: undefined }
  const extensionsLength = hello.u16()
  const extensions = extensionsLength === undefined ? undefined : hello.sub(Math.min(extensionsLength, hello.remaining))
  while (extensions !== undefined && extensions.remaining >= 4) {
    const type = extensions.u16()
    const size = extensions.u16()
    if (type === undefined || size === undefined) break
    const data = extensions.sub(size)
    if (data === undefined) break
    if (type === SERVER_NAME_EXTENSION) return { _tag: "ClientHello", serverName: serverNameOf(data) }
  }
  return { _tag: "ClientHello", serverName: undefined }
}
