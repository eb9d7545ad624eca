/**
 * What the load generator counts: latency histograms (log-linear buckets in the manner of
 * HdrHistogram: exact below 2^bits, then 2^(bits-1) buckets per power of two, so a percentile is
 * within 1/2^bits of the true value), and the counters each worker keeps. Both are plain data
 * so workers can post them to the main thread, which merges them.
 *
 * Pure: no I/O, no clock.
 */

/** A latency histogram of non-negative integer values (the generator records microseconds). */
export interface Histogram {
  /** Precision bits: values below 2^bits are exact, larger ones within 2^-bits relative. */
  readonly bits: number
  /** Count per bucket; see {@link bucketOf}. */
  readonly counts: Float64Array
  count: number
  sum: number
  min: number
  max: number
}

/** Default precision: 0.4% relative error, 4,000 buckets up to about 19 hours in microseconds. */
export const defaultBits = 8

/** Largest value a histogram holds; larger values are recorded as this. */
export const maxValue = 2 ** 36 - 1

const bucketCount = (bits: number): number => {
  const half = 2 ** (bits - 1)
  return 2 ** bits + (36 - bits) * half
}

/** An empty histogram. */
export const make = (bits: number = defaultBits): Histogram => ({
  bits,
  counts: new Float64Array(bucketCount(bits)),
  count: 0,
  sum: 0,
  min: Number.POSITIVE_INFINITY,
  max: 0
})

/** The bucket that holds `value` (an integer in [0, maxValue]). */
export const bucketOf = (bits: number, value: number): number => {
  const size = 2 ** bits
  if (value < size) return value
  const half = size / 2
  const msb = Math.floor(Math.log2(value))
  // log2 of a float can land one off near powers of two: correct it against the integer.
  const top = 2 ** msb > value ? msb - 1 : 2 ** (msb + 1) <= value ? msb + 1 : msb
  const shift = top - bits + 1
  const mantissa = Math.floor(value / 2 ** shift)
  return size + (shift - 1) * half + (mantissa - half)
}

/** The smallest and largest value a bucket holds. */
export const bucketRange = (bits: number, index: number): readonly [number, number] => {
  const size = 2 ** bits
  if (index < size) return [index, index]
  const half = size / 2
  const k = index - size
  const shift = Math.floor(k / half) + 1
  const mantissa = (k % half) + half
  return [mantissa * 2 ** shift, (mantissa + 1) * 2 ** shift - 1]
}

/** Adds one value (rounded, clamped to [0, maxValue]). */
export const record = (histogram: Histogram, value: number): void => {
  const v = Math.min(maxValue, Math.max(0, Math.round(value)))
  const index = bucketOf(histogram.bits, v)
  histogram.counts[index] = (histogram.counts[index] ?? 0) + 1
  histogram.count += 1
  histogram.sum += v
  if (v < histogram.min) histogram.min = v
  if (v > histogram.max) histogram.max = v
}

/** Adds every value of `from` into `into` (same precision). */
export const merge = (into: Histogram, from: Histogram): void => {
  if (into.bits !== from.bits) throw new RangeError(`cannot merge histograms of ${from.bits} and ${into.bits} bits`)
  for (let i = 0; i < from.counts.length; i++) {
    const c = from.counts[i] ?? 0
    if (c !== 0) into.counts[i] = (into.counts[i] ?? 0) + c
  }
  into.count += from.count
  into.sum += from.sum
  if (from.min < into.min) into.min = from.min
  if (from.max > into.max) into.max = from.max
}

/**
 * The value at percentile `p` (0-100) by nearest rank: the smallest recorded value with at
 * least p% of the values at or below it. Exact below 2^bits and at the ends; elsewhere the
 * middle of its bucket, kept within the recorded minimum and maximum. NaN for an empty histogram.
 */
export const percentile = (histogram: Histogram, p: number): number => {
  if (histogram.count === 0) return Number.NaN
  const rank = Math.max(1, Math.ceil((Math.min(100, Math.max(0, p)) / 100) * histogram.count))
  // The ends are known exactly.
  if (rank >= histogram.count) return histogram.max
  if (rank === 1) return histogram.min
  let seen = 0
  for (let i = 0; i < histogram.counts.length; i++) {
    seen += histogram.counts[i] ?? 0
    if (seen >= rank) {
      const [low, high] = bucketRange(histogram.bits, i)
      const middle = low === high ? low : (low + high) / 2
      return Math.min(histogram.max, Math.max(histogram.min, middle))
    }
  }
  return histogram.max
}

/** The mean of the recorded values; NaN for an empty histogram. */
export const mean = (histogram: Histogram): number => histogram.count === 0 ? Number.NaN : histogram.sum / histogram.count

/** A summary in milliseconds of a histogram of microseconds. */
export interface LatencySummary {
  readonly count: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly max: number
  readonly mean: number
}

const ms = (micros: number): number => Number.isNaN(micros) ? 0 : Math.round(micros) / 1000

/** Percentiles of a histogram of microseconds, in milliseconds (0 when empty). */
export const summarize = (histogram: Histogram): LatencySummary => ({
  count: histogram.count,
  p50: ms(percentile(histogram, 50)),
  p90: ms(percentile(histogram, 90)),
  p99: ms(percentile(histogram, 99)),
  max: ms(histogram.count === 0 ? Number.NaN : histogram.max),
  mean: ms(mean(histogram))
})

// ---------------------------------------------------------------------------------------------
// Counters

/** What one worker (or the sum of all) has done so far. */
export interface Counters {
  /** Connections that ended with QUIT answered (or closed after it). */
  connections: number
  /** Connections started. */
  attempts: number
  fullHandshakes: number
  resumedHandshakes: number
  /** Messages accepted (250 after the final dot). */
  messages: number
  /** Failures by kind ("connect refused", "timeout", "tls-handshake", "4xx MAIL", "closed", ...). */
  errors: Record<string, number>
}

/** Zero counters. */
export const emptyCounters = (): Counters => ({
  connections: 0,
  attempts: 0,
  fullHandshakes: 0,
  resumedHandshakes: 0,
  messages: 0,
  errors: {}
})

/** Adds `from` into `into`. */
export const addCounters = (into: Counters, from: Counters): void => {
  into.connections += from.connections
  into.attempts += from.attempts
  into.fullHandshakes += from.fullHandshakes
  into.resumedHandshakes += from.resumedHandshakes
  into.messages += from.messages
  for (const [kind, count] of Object.entries(from.errors)) into.errors[kind] = (into.errors[kind] ?? 0) + count
}

/** Every error, whatever its kind. */
export const errorTotal = (counters: Counters): number =>
  Object.values(counters.errors).reduce((sum, count) => sum + count, 0)
