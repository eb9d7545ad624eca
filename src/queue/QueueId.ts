/**
 * Queue ids: short, unique, sortable names for queued messages, in the spirit of Postfix's
 * long queue ids.
 *
 *   TTTTTTTTTT CCC P...
 *
 * `T` is the creation time in epoch milliseconds and `C` a counter within that millisecond,
 * both fixed-width Crockford base32 (digits, then upper-case letters without I, L, O, U, so
 * that string order is numeric order); `P` is the partition, upper-cased. Ids of one
 * partition sort by creation; ids of different partitions never collide.
 *
 * Uniqueness across restarts rests on the clock moving forward, and where it might not (a
 * clock stepped back across a restart) the generator is seeded with the largest id the
 * partition's log already holds and never goes below it. Pure: no I/O.
 */

const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
const timeWidth = 10
const counterWidth = 3
/** Ids per millisecond before the generator borrows the next millisecond. */
export const counterLimit = 32 ** counterWidth
const partitionPattern = /^[0-9A-Za-z]{1,16}$/

const encode = (value: number, width: number): string => {
  let out = ""
  let rest = value
  for (let i = 0; i < width; i++) {
    out = alphabet.charAt(rest % 32) + out
    rest = Math.floor(rest / 32)
  }
  return out
}

const decode = (text: string): number | undefined => {
  let value = 0
  for (const char of text) {
    const digit = alphabet.indexOf(char)
    if (digit < 0) return undefined
    value = value * 32 + digit
  }
  return value
}

/** Whether `partition` can appear in a queue id (1 to 16 ASCII letters or digits). */
export const isValidPartition = (partition: string): boolean => partitionPattern.test(partition)

/** The parts of a queue id. */
export interface Parts {
  /** Epoch milliseconds (possibly borrowed ahead of the clock, see `generator`). */
  readonly time: number
  readonly counter: number
  /** The partition as it appears in the id (upper-cased). */
  readonly partition: string
}

/** Formats the parts of an id; `partition` must satisfy `isValidPartition`. */
export const format = (parts: Parts): string =>
  encode(parts.time, timeWidth) + encode(parts.counter, counterWidth) + parts.partition.toUpperCase()

/** Reads an id written by `format`, or `undefined` when the text is not one. */
export const parse = (id: string): Parts | undefined => {
  if (id.length <= timeWidth + counterWidth) return undefined
  const time = decode(id.slice(0, timeWidth))
  const counter = decode(id.slice(timeWidth, timeWidth + counterWidth))
  const partition = id.slice(timeWidth + counterWidth)
  if (time === undefined || counter === undefined || !partitionPattern.test(partition)) return undefined
  if (partition !== partition.toUpperCase()) return undefined
  return { time, counter, partition }
}

/** Issues ids for one partition. Not shared between processes. */
export interface Generator {
  /** The next id, given the current time in epoch milliseconds. Strictly increasing. */
  readonly next: (now: number) => string
}

/**
 * A generator for `partition` whose ids all sort after `after` (the largest id already used,
 * if known), whatever the clock says.
 */
export const generator = (options: { readonly partition: string; readonly after?: string | undefined }): Generator => {
  if (!isValidPartition(options.partition)) throw new RangeError(`invalid partition for queue ids: ${options.partition}`)
  const partition = options.partition.toUpperCase()
  const floor = options.after === undefined ? undefined : parse(options.after)
  let lastTime = floor?.time ?? -1
  let counter = floor?.counter ?? 0
  return {
    next: (now) => {
      const time = Math.floor(now)
      if (time > lastTime) {
        lastTime = time
        counter = 0
      } else if (counter + 1 < counterLimit) {
        counter += 1
      } else {
        lastTime += 1
        counter = 0
      }
      return format({ time: lastTime, counter, partition })
    }
  }
}
