/**
 * IP addresses and CIDR networks for policy rules and listeners (pure).
 *
 * Parsing, canonical formatting and containment come from `effect/net`
 * (`NetAddress`, `IpInterface`, `IpNetwork`), which are pure values with no
 * platform dependency. This module adds what Postern needs on top: results
 * with a human-readable reason for configuration errors, a bare address read
 * as a /32 or /128 network, and one rule for IPv4-mapped IPv6 addresses
 * (`::ffff:192.0.2.1`), which a dual-stack socket reports for IPv4 peers:
 * such an address is the IPv4 address, everywhere.
 *
 * @since 0.1.0
 */
import { Option, Result } from "effect"
import { IpInterface, IpNetwork, NetAddress } from "effect/net"

/**
 * An IPv4 or IPv6 address (an `effect/net` value).
 *
 * @since 0.1.0
 */
export type Address = NetAddress.IpAddress

/**
 * A CIDR network (an `effect/net` value). Networks written in the IPv4-mapped
 * IPv6 range with a prefix of at least 96 are stored as the IPv4 network they
 * denote.
 *
 * @since 0.1.0
 */
export type Network = IpNetwork.IpNetwork

/**
 * The outcome of {@link parseAddress}.
 *
 * @since 0.1.0
 */
export type AddressResult =
  | { readonly ok: true; readonly address: Address }
  | { readonly ok: false; readonly reason: string }

/**
 * The outcome of {@link parseNetwork}.
 *
 * @since 0.1.0
 */
export type NetworkResult =
  | { readonly ok: true; readonly network: Network }
  | { readonly ok: false; readonly reason: string }

/**
 * The outcome of {@link parseNetworks}: every network, or the first text that
 * failed and why.
 *
 * @since 0.1.0
 */
export type NetworksResult =
  | { readonly ok: true; readonly networks: ReadonlyArray<Network> }
  | { readonly ok: false; readonly input: string; readonly reason: string }

/** Bits an IPv4 address is shifted by inside `::ffff:0:0/96`. */
const mappedPrefix = 96

/**
 * The canonical form of an address: an IPv4-mapped IPv6 address becomes the
 * IPv4 address it carries, anything else is returned as is.
 *
 * @since 0.1.0
 */
export const canonical = (address: Address): Address => NetAddress.toCanonical(address)

/**
 * Parses a bare IPv4 (strict dotted decimal, no leading zeros) or IPv6 address
 * (compressed forms and a trailing embedded IPv4 allowed; no brackets, no
 * zone). The result is canonical: an IPv4-mapped address is returned as IPv4.
 *
 * @since 0.1.0
 */
export const parseAddress = (text: string): AddressResult => {
  const parsed = NetAddress.ipFromString(text)
  return Result.isSuccess(parsed)
    ? { ok: true, address: canonical(parsed.success) }
    : { ok: false, reason: `invalid IP address ${JSON.stringify(text)}: ${parsed.failure.message}` }
}

const canonicalNetwork = (network: Network): Network => {
  if (!NetAddress.isIpv6Address(network.address) || network.prefixLength < mappedPrefix) return network
  return Option.match(NetAddress.fromIpv4Mapped(network.address), {
    onNone: () => network,
    onSome: (ipv4) => IpNetwork.makeUnsafe(ipv4, network.prefixLength - mappedPrefix)
  })
}

/**
 * Parses a CIDR network (`10.0.0.0/8`, `2001:db8::/32`) or a bare address
 * (a /32 or /128 network). The address must have no host bits set: a
 * `10.1.2.3/8` is a likely typo and is refused, with the network it would be
 * named in the reason.
 *
 * @since 0.1.0
 */
export const parseNetwork = (text: string): NetworkResult => {
  const parsed = IpInterface.fromString(text, { prefix: "optional" })
  if (Result.isFailure(parsed)) {
    return { ok: false, reason: `invalid network ${JSON.stringify(text)}: ${parsed.failure.message}` }
  }
  const { address, prefixLength } = parsed.success
  const network = IpNetwork.make(address, prefixLength)
  if (Result.isFailure(network)) {
    const suggestion = IpNetwork.format(IpNetwork.fromAddressUnsafe(address, prefixLength))
    return {
      ok: false,
      reason: `invalid network ${JSON.stringify(text)}: host bits are set (did you mean ${suggestion}?)`
    }
  }
  return { ok: true, network: canonicalNetwork(network.success) }
}

/**
 * Parses a list of networks, stopping at the first invalid one.
 *
 * @since 0.1.0
 */
export const parseNetworks = (texts: ReadonlyArray<string>): NetworksResult => {
  const networks: Array<Network> = []
  for (const text of texts) {
    const parsed = parseNetwork(text)
    if (!parsed.ok) return { ok: false, input: text, reason: parsed.reason }
    networks.push(parsed.network)
  }
  return { ok: true, networks }
}

const toAddress = (ip: Address | string): Address | undefined => {
  if (typeof ip !== "string") return canonical(ip)
  const parsed = parseAddress(ip)
  return parsed.ok ? parsed.address : undefined
}

/**
 * Whether a network contains an address. An IPv4-mapped IPv6 address is
 * matched as its IPv4 address, and IPv4 addresses never match other IPv6
 * networks (so `::/0` means every IPv6 peer, not every peer). A string that is
 * not an address is contained in no network.
 *
 * @since 0.1.0
 */
export const contains = (network: Network, ip: Address | string): boolean => {
  const address = toAddress(ip)
  return address !== undefined && IpNetwork.contains(canonicalNetwork(network), address)
}

/**
 * Whether any of the networks contains the address (see {@link contains}).
 *
 * @since 0.1.0
 */
export const inNetworks = (ip: Address | string, networks: Iterable<Network>): boolean => {
  const address = toAddress(ip)
  if (address === undefined) return false
  for (const network of networks) {
    if (IpNetwork.contains(canonicalNetwork(network), address)) return true
  }
  return false
}

/**
 * The canonical text of an address: IPv4 dotted decimal, IPv6 in RFC 5952
 * form (lowercase, longest zero run compressed), and an IPv4-mapped address
 * as its IPv4 address.
 *
 * @since 0.1.0
 */
export const format = (address: Address): string => NetAddress.formatIp(canonical(address))

/**
 * The canonical text (see {@link format}) of an address written as text, or
 * `undefined` when the text is not an address.
 *
 * @since 0.1.0
 */
export const normalize = (ip: string): string | undefined => {
  const parsed = parseAddress(ip)
  return parsed.ok ? format(parsed.address) : undefined
}

/**
 * The CIDR text of a network, with its canonical address.
 *
 * @since 0.1.0
 */
export const formatNetwork = (network: Network): string => IpNetwork.format(network)

/** An address as numbers, for matching without objects: IPv4 one word, IPv6 four. */
type Numeric = { readonly v4: number } | { readonly v6: readonly [number, number, number, number] }

const numericOf = (address: Address): Numeric => {
  if (NetAddress.isIpv4Address(address)) {
    const [a, b, c, d] = NetAddress.ipv4ToOctets(address)
    return { v4: ((a << 24) | (b << 16) | (c << 8) | d) >>> 0 }
  }
  const s = NetAddress.ipv6ToSegments(address)
  const word = (i: number) => (((s[i] ?? 0) << 16) | (s[i + 1] ?? 0)) >>> 0
  return { v6: [word(0), word(2), word(4), word(6)] }
}

const maskOf = (bits: number): number => (bits <= 0 ? 0 : bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0)

// Client addresses repeat (every rule of a session asks about the same one): parse each once.
const parsedAddresses = new Map<string, Numeric | null>()
const parsedCacheLimit = 4096

const numericOfText = (text: string): Numeric | null => {
  const cached = parsedAddresses.get(text)
  if (cached !== undefined) return cached
  const parsed = parseAddress(text)
  const numeric = parsed.ok ? numericOf(parsed.address) : null
  if (parsedAddresses.size >= parsedCacheLimit) parsedAddresses.clear()
  parsedAddresses.set(text, numeric)
  return numeric
}

/**
 * A matcher for `networks`: the index of the first that contains the address (given as text),
 * or -1; an address that does not parse is in none. The same answers as {@link contains}, in
 * a few nanoseconds per network: what policy rules call for every recipient.
 */
export const matcher = (networks: ReadonlyArray<Network>): ((ip: string) => number) => {
  const compiled = networks.map((network) => {
    const canonicalized = canonicalNetwork(network)
    const base = numericOf(canonicalized.address)
    return { base, prefix: canonicalized.prefixLength }
  })
  return (ip) => {
    const address = numericOfText(ip)
    if (address === null) return -1
    for (let i = 0; i < compiled.length; i++) {
      const entry = compiled[i]
      if (entry === undefined) continue
      const { base, prefix } = entry
      if ("v4" in base) {
        if ("v4" in address && ((address.v4 & maskOf(prefix)) >>> 0) === ((base.v4 & maskOf(prefix)) >>> 0)) return i
        continue
      }
      if (!("v6" in address)) continue
      let inside = true
      for (let w = 0; w < 4 && inside; w++) {
        const bits = Math.min(32, Math.max(0, prefix - w * 32))
        const mask = maskOf(bits)
        if (((address.v6[w] ?? 0) & mask) >>> 0 !== ((base.v6[w] ?? 0) & mask) >>> 0) inside = false
      }
      if (inside) return i
    }
    return -1
  }
}
