/**
 * Server names as TLS sees them: which configured name (exact "mail.example.org" or wildcard
 * "*.example.org") a client's SNI selects, and which names a certificate covers.
 *
 * Matching follows RFC 6125 section 6.4.3 in its strict form: a wildcard stands for exactly
 * one whole left-most label, so "*.example.org" matches "a.example.org" but neither
 * "example.org" nor "a.b.example.org"; an exact name beats a wildcard. Names compare without
 * case and without a trailing dot. Pure: no `node:*`.
 */

/** How a name was matched. */
export type MatchKind = "exact" | "wildcard"

/** The entry whose configured name matched, and how. */
export interface Match<E> {
  readonly entry: E
  readonly match: MatchKind
}

const label = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/
const numeric = /^[0-9]+$/

/**
 * A host name in the form SNI carries (RFC 6066 section 3): ASCII labels (internationalized
 * names in their "xn--" form) of letters, digits, hyphens (and underscores, which some
 * internal names use), at most 253 characters, already lower-cased and without a trailing
 * dot. IP literals are not host names: an all-numeric last label is refused, and ":" never
 * passes.
 */
const isHostName = (name: string): boolean => {
  if (name.length === 0 || name.length > 253) return false
  const labels = name.split(".")
  const last = labels[labels.length - 1] ?? ""
  if (numeric.test(last)) return false
  return labels.every((l) => label.test(l))
}

/** Lower case, without one trailing dot. */
const canonical = (name: string): string => {
  const lower = name.toLowerCase()
  return lower.endsWith(".") ? lower.slice(0, -1) : lower
}

/**
 * The canonical form of a client's SNI, or undefined when it is not a valid host name (an IP
 * literal, an empty name, a name with a wildcard or with characters a host name cannot have).
 */
export const normalize = (sni: string): string | undefined => {
  const name = canonical(sni)
  return isHostName(name) ? name : undefined
}

/**
 * Whether a configured server name is acceptable: a host name, or "*." followed by a host name
 * of at least two labels ("*.org" would claim a whole top-level domain).
 */
export const validName = (name: string): boolean => {
  const c = canonical(name)
  if (c.startsWith("*.")) {
    const rest = c.slice(2)
    return rest.includes(".") && isHostName(rest)
  }
  return isHostName(c)
}

/**
 * The part of a name a wildcard stands before: "a.example.org" → "example.org". Undefined for
 * a single-label name, which no wildcard matches.
 */
const parentOf = (name: string): string | undefined => {
  const dot = name.indexOf(".")
  return dot < 0 ? undefined : name.slice(dot + 1)
}

/** Configured names prepared for lookups: exact names and wildcard suffixes in maps. */
export interface Index<E> {
  readonly exact: ReadonlyMap<string, E>
  /** "*.example.org" is stored under "example.org". */
  readonly wildcard: ReadonlyMap<string, E>
}

/**
 * Indexes configured names with their entries. Invalid names are skipped (configuration
 * validation rejects them first); when a name is configured twice the first entry keeps it.
 */
export const index = <E>(entries: Iterable<readonly [name: string, entry: E]>): Index<E> => {
  const exact = new Map<string, E>()
  const wildcard = new Map<string, E>()
  for (const [name, entry] of entries) {
    if (!validName(name)) continue
    const c = canonical(name)
    const [map, key] = c.startsWith("*.") ? [wildcard, c.slice(2)] : [exact, c]
    if (!map.has(key)) map.set(key, entry)
  }
  return { exact, wildcard }
}

/** The entry a client's SNI selects: an exact name first, then a wildcard one label up. */
export const lookup = <E>(idx: Index<E>, sni: string): Match<E> | undefined => {
  const name = normalize(sni)
  if (name === undefined) return undefined
  const exact = idx.exact.get(name)
  if (exact !== undefined) return { entry: exact, match: "exact" }
  const parent = parentOf(name)
  const wildcard = parent === undefined ? undefined : idx.wildcard.get(parent)
  return wildcard === undefined ? undefined : { entry: wildcard, match: "wildcard" }
}

/**
 * Finds the entry for a client's SNI among configured names, where `namesOf` gives each
 * entry's names. For repeated lookups build an `index` once.
 */
export const find = <E>(
  entries: ReadonlyArray<E>,
  namesOf: (entry: E) => ReadonlyArray<string>,
  sni: string
): Match<E> | undefined => lookup(index(entries.flatMap((e) => namesOf(e).map((n) => [n, e] as const))), sni)

/**
 * Whether a certificate name (a DNS subjectAltName, or the CN of a certificate without one)
 * covers a configured name. An exact configured name is covered by the same name or by a
 * wildcard one label up; a configured wildcard only by the same wildcard.
 */
export const covers = (certificateName: string, configured: string): boolean => {
  const pattern = canonical(certificateName)
  const name = canonical(configured)
  if (pattern === name) return true
  if (!pattern.startsWith("*.") || name.startsWith("*.")) return false
  return parentOf(name) === pattern.slice(2)
}
