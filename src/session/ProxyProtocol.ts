/**
 * The HAProxy PROXY protocol header, versions 1 (text) and 2 (binary), as an
 * incremental parser over the first bytes of a connection (pure).
 *
 * The listener accumulates what the socket delivered and calls {@link parse}
 * until it answers `Header` (use the header, keep the bytes after `consumed`
 * for the SMTP framer) or `Invalid` (close the connection). The parser never
 * looks past the header's own end, so pipelined SMTP bytes that arrive in the
 * same packet stay intact, and it never waits for more than a header can hold.
 *
 * Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
 *
 * @since 0.1.0
 */
import { Result } from "effect"
import { NetAddress } from "effect/net"
import * as Network from "../policy/Network.ts"
import { CR, LF } from "./Bytes.ts"

/**
 * An address and port announced in a header. The address is in canonical
 * text form (see `Network.format`).
 *
 * @since 0.1.0
 */
export interface Endpoint {
  readonly address: string
  readonly port: number
}

/**
 * A complete, valid header. `local` (v2 health checks) and `unknown` families
 * carry no endpoints: the connection's own addresses apply.
 *
 * @since 0.1.0
 */
export interface ProxyHeader {
  readonly version: 1 | 2
  readonly command: "proxy" | "local"
  readonly family: "tcp4" | "tcp6" | "unknown"
  readonly source?: Endpoint
  readonly destination?: Endpoint
}

/**
 * The bytes so far are a valid beginning of a header.
 *
 * @since 0.1.0
 */
export interface NeedMore {
  readonly _tag: "NeedMore"
}

/**
 * A complete header occupying the first `consumed` bytes.
 *
 * @since 0.1.0
 */
export interface Header {
  readonly _tag: "Header"
  readonly header: ProxyHeader
  readonly consumed: number
}

/**
 * The bytes are not, and cannot become, a valid header.
 *
 * @since 0.1.0
 */
export interface Invalid {
  readonly _tag: "Invalid"
  readonly reason: string
}

/**
 * The outcome of {@link parse}.
 *
 * @since 0.1.0
 */
export type ParseResult = NeedMore | Header | Invalid

/**
 * Parser settings.
 *
 * @since 0.1.0
 */
export interface Options {
  /**
   * The largest v2 length field (bytes after the 16-byte fixed part) to wait
   * for; a header declaring more is refused. Defaults to the spec's own
   * maximum, {@link v2MaxLength}.
   */
  readonly maxV2Length?: number
}

/**
 * The longest v1 line, CRLF included (spec section 2.1).
 *
 * @since 0.1.0
 */
export const v1MaxLength = 107

/**
 * The largest value of the v2 length field.
 *
 * @since 0.1.0
 */
export const v2MaxLength = 0xffff

/**
 * The 12 bytes every v2 header starts with.
 *
 * @since 0.1.0
 */
export const v2Signature: Uint8Array = Uint8Array.of(
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a
)

/** Signature, version/command, family/transport, 16-bit length. */
const v2FixedLength = 16

const v1Prefix = Uint8Array.from("PROXY ", (c) => c.charCodeAt(0))
const portPattern = /^(?:0|[1-9][0-9]{0,4})$/

const needMore: NeedMore = { _tag: "NeedMore" }
const invalid = (reason: string): Invalid => ({ _tag: "Invalid", reason })
const header = (value: ProxyHeader, consumed: number): Header => ({ _tag: "Header", header: value, consumed })

/** Whether the available bytes agree with `expected` as far as they go. */
const matchesPrefix = (bytes: Uint8Array, expected: Uint8Array): boolean => {
  const n = Math.min(bytes.length, expected.length)
  for (let i = 0; i < n; i++) {
    if (bytes[i] !== expected[i]) return false
  }
  return true
}

const ascii = (bytes: Uint8Array, end: number): string => {
  let text = ""
  for (let i = 0; i < end; i++) text += String.fromCharCode(bytes[i] ?? 0)
  return text
}

const parsePort = (text: string): number | undefined => {
  if (!portPattern.test(text)) return undefined
  const port = Number(text)
  return port <= 0xffff ? port : undefined
}

const parseV1Address = (text: string, family: "tcp4" | "tcp6"): string | undefined => {
  const parsed: Result.Result<NetAddress.IpAddress, NetAddress.NetAddressError> = family === "tcp4"
    ? NetAddress.ipv4FromString(text)
    : NetAddress.ipv6FromString(text)
  return Result.isSuccess(parsed) ? Network.format(parsed.success) : undefined
}

const parseV1Line = (line: string, consumed: number): ParseResult => {
  if (line === "PROXY UNKNOWN" || line.startsWith("PROXY UNKNOWN ")) {
    // The spec has receivers ignore whatever follows UNKNOWN.
    return header({ version: 1, command: "proxy", family: "unknown" }, consumed)
  }
  const fields = line.split(" ")
  const [, protocol = "", sourceText = "", destinationText = "", sourcePortText = "", destinationPortText = ""] =
    fields
  const family = protocol === "TCP4" ? "tcp4" : protocol === "TCP6" ? "tcp6" : undefined
  if (family === undefined && protocol !== "") return invalid(`v1: unknown protocol ${JSON.stringify(protocol)}`)
  if (family === undefined || fields.length !== 6) {
    return invalid("v1: expected PROXY, protocol, two addresses and two ports, single-spaced")
  }
  const source = parseV1Address(sourceText, family)
  if (source === undefined) {
    return invalid(`v1: invalid ${protocol} source address ${JSON.stringify(sourceText)}`)
  }
  const destination = parseV1Address(destinationText, family)
  if (destination === undefined) {
    return invalid(`v1: invalid ${protocol} destination address ${JSON.stringify(destinationText)}`)
  }
  const sourcePort = parsePort(sourcePortText)
  if (sourcePort === undefined) return invalid(`v1: invalid source port ${JSON.stringify(sourcePortText)}`)
  const destinationPort = parsePort(destinationPortText)
  if (destinationPort === undefined) {
    return invalid(`v1: invalid destination port ${JSON.stringify(destinationPortText)}`)
  }
  return header({
    version: 1,
    command: "proxy",
    family,
    source: { address: source, port: sourcePort },
    destination: { address: destination, port: destinationPort }
  }, consumed)
}

const parseV1 = (bytes: Uint8Array): ParseResult => {
  if (!matchesPrefix(bytes, v1Prefix)) return invalid("v1: line does not start with \"PROXY \"")
  const window = Math.min(bytes.length, v1MaxLength)
  for (let i = 0; i < window; i++) {
    const byte = bytes[i]
    if (byte === LF) return invalid("v1: bare LF")
    if (byte !== CR) continue
    if (i + 2 > v1MaxLength) return invalid(`v1: no CRLF within ${v1MaxLength} bytes`)
    if (i + 1 >= bytes.length) return needMore
    if (bytes[i + 1] !== LF) return invalid("v1: CR not followed by LF")
    return parseV1Line(ascii(bytes, i), i + 2)
  }
  return bytes.length >= v1MaxLength ? invalid(`v1: no CRLF within ${v1MaxLength} bytes`) : needMore
}

const u16 = (bytes: Uint8Array, offset: number): number => ((bytes[offset] ?? 0) << 8) | (bytes[offset + 1] ?? 0)

/** Address block sizes per v2 address family (high nibble of byte 14). */
const v2BlockSize: ReadonlyArray<number> = [0, 12, 36, 216]

const AF_UNSPEC = 0
const AF_INET = 1
const AF_INET6 = 2
const STREAM = 1
const maxTransport = 2

/** Checks that the TLVs between `start` and `end` each fit before `end`. */
const checkTlvs = (bytes: Uint8Array, start: number, end: number): string | undefined => {
  let offset = start
  while (offset < end) {
    if (offset + 3 > end) return "v2: truncated TLV header"
    offset += 3 + u16(bytes, offset + 1)
    if (offset > end) return "v2: TLV overruns the header length"
  }
  return undefined
}

const v2Endpoints = (
  bytes: Uint8Array,
  family: "tcp4" | "tcp6"
): { readonly source: Endpoint; readonly destination: Endpoint } => {
  const base = v2FixedLength
  const width = family === "tcp4" ? 4 : 16
  const address = (offset: number): string =>
    Network.format(
      family === "tcp4"
        ? NetAddress.ipv4FromBytesUnsafe(bytes.subarray(offset, offset + width))
        : NetAddress.ipv6FromBytesUnsafe(bytes.subarray(offset, offset + width))
    )
  const ports = base + 2 * width
  return {
    source: { address: address(base), port: u16(bytes, ports) },
    destination: { address: address(base + width), port: u16(bytes, ports + 2) }
  }
}

const parseV2 = (bytes: Uint8Array, maxLength: number): ParseResult => {
  if (!matchesPrefix(bytes, v2Signature)) return invalid("v2: bad signature")
  const versionCommand = bytes[12]
  if (versionCommand === undefined) return needMore
  if (versionCommand >> 4 !== 2) return invalid(`v2: unsupported version ${versionCommand >> 4}`)
  const command = versionCommand & 0x0f
  if (command > 1) return invalid(`v2: unassigned command ${command}`)
  const familyTransport = bytes[13]
  if (familyTransport === undefined) return needMore
  const addressFamily = familyTransport >> 4
  const transport = familyTransport & 0x0f
  const blockSize = v2BlockSize[addressFamily]
  if (command === 1 && (blockSize === undefined || transport > maxTransport)) {
    return invalid(`v2: unassigned address family/transport 0x${familyTransport.toString(16).padStart(2, "0")}`)
  }
  if (bytes.length < v2FixedLength) return needMore
  const length = u16(bytes, 14)
  if (length > maxLength) return invalid(`v2: header length ${length} exceeds the limit of ${maxLength}`)
  const consumed = v2FixedLength + length
  if (command === 0) {
    // LOCAL (a health check): the spec has receivers discard the whole block, family included.
    return bytes.length < consumed ? needMore : header({ version: 2, command: "local", family: "unknown" }, consumed)
  }
  const block = blockSize ?? 0
  if (length < block) return invalid(`v2: header length ${length} is shorter than its ${block}-byte address block`)
  if (bytes.length < consumed) return needMore
  if (addressFamily !== AF_UNSPEC) {
    const problem = checkTlvs(bytes, v2FixedLength + block, consumed)
    if (problem !== undefined) return invalid(problem)
  }
  const family = transport !== STREAM
    ? "unknown"
    : addressFamily === AF_INET
    ? "tcp4"
    : addressFamily === AF_INET6
    ? "tcp6"
    : "unknown"
  if (family === "unknown") return header({ version: 2, command: "proxy", family }, consumed)
  return header({ version: 2, command: "proxy", family, ...v2Endpoints(bytes, family) }, consumed)
}

/**
 * Parses the PROXY header at the start of `bytes` (everything received so
 * far on the connection). `NeedMore` until the whole header is there,
 * `Header` with the number of bytes it took once it is, `Invalid` as soon as
 * the bytes cannot be a valid header (including a v1 line with no CRLF in its
 * first 107 bytes, or a v2 length above `options.maxV2Length`).
 *
 * @since 0.1.0
 */
export const parse = (bytes: Uint8Array, options?: Options): ParseResult => {
  const first = bytes[0]
  if (first === undefined) return needMore
  if (first === v1Prefix[0]) return parseV1(bytes)
  if (first === v2Signature[0]) return parseV2(bytes, options?.maxV2Length ?? v2MaxLength)
  return invalid("not a PROXY protocol header")
}

/**
 * Whether a PROXY header is expected from a peer: only peers inside the
 * trusted networks (the load balancers) may announce another client address.
 * A peer address that does not parse is not trusted.
 *
 * @since 0.1.0
 */
export const decide = (
  peerIp: Network.Address | string,
  trustedNetworks: Iterable<Network.Network>
): boolean => Network.inNetworks(peerIp, trustedNetworks)
