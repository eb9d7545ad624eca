/**
 * Durations as a configuration file writes them, decoded to milliseconds.
 *
 * A duration is a number of milliseconds (`250`) or a string with a unit (`"250ms"`, `"300s"`,
 * `"5m"`, `"10 minutes"`, `"1h"`, `"2 days"`). A string without a unit is refused: `"300"`
 * could mean seconds to one reader and milliseconds to another.
 *
 * Pure: no `node:*`, no runtime.
 */
import { Schema, SchemaTransformation } from "effect"

const forms = "milliseconds as a number, or a string such as \"250ms\", \"300s\", \"5m\", \"10 minutes\", \"1h\""

/** What a configuration error says a duration should look like. */
export const expected = `a duration: ${forms}`

/** What a configuration error says a strictly positive duration should look like. */
export const expectedPositive = `a duration greater than zero: ${forms}`

const unitMillis: ReadonlyArray<readonly [ReadonlyArray<string>, number]> = [
  [["ms", "msec", "msecs", "millis", "millisecond", "milliseconds"], 1],
  [["s", "sec", "secs", "second", "seconds"], 1_000],
  [["m", "min", "mins", "minute", "minutes"], 60_000],
  [["h", "hr", "hrs", "hour", "hours"], 3_600_000],
  [["d", "day", "days"], 86_400_000]
]

const millisByUnit: ReadonlyMap<string, number> = new Map(
  unitMillis.flatMap(([names, millis]) => names.map((name) => [name, millis] as const))
)

const pattern = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-zA-Z]+)\s*$/

/** A duration in the encoded form a configuration file may use. */
export type Input = number | string

/**
 * Milliseconds for a duration input, rounded to a whole millisecond, or `undefined` when the
 * input is not a non-negative finite number or a string with a known unit.
 */
export const toMillis = (input: Input): number | undefined => {
  if (typeof input === "number") {
    return Number.isFinite(input) && input >= 0 ? Math.round(input) : undefined
  }
  const match = pattern.exec(input)
  if (match === null) return undefined
  const [, amount = "", unit = ""] = match
  const millis = millisByUnit.get(unit.toLowerCase())
  if (millis === undefined) return undefined
  const value = Number(amount) * millis
  return Number.isFinite(value) ? Math.round(value) : undefined
}

// The check runs on the encoded side, so a bad duration is reported together with every other
// bad value of the file, and the transformation after it cannot fail.
const make = (expectation: string, accept: (millis: number) => boolean) =>
  Schema.Union([Schema.Number, Schema.String])
    .annotate({ expected: expectation })
    .check(
      Schema.makeFilter((input: Input) => {
        const millis = toMillis(input)
        return millis !== undefined && accept(millis)
      }, { expected: expectation })
    )
    .pipe(
      Schema.decodeTo(
        Schema.Number,
        SchemaTransformation.transform<number, Input>({
          decode: (input) => toMillis(input) ?? 0,
          encode: (millis) => millis
        })
      )
    )

/**
 * Decodes a duration to milliseconds (a non-negative integer). Encoding gives the number of
 * milliseconds back, which decodes to the same value.
 */
export const Millis = make(expected, () => true)

/** Like {@link Millis}, but zero is refused: for timeouts and intervals that must elapse. */
export const PositiveMillis = make(expectedPositive, (millis) => millis > 0)
