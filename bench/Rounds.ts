/**
 * Alternated measuring rounds. A VM's speed drifts by a fifth within minutes, so a ratio of two
 * servers measured one after the other says as much about the drift as about the servers. Each
 * round measures both, in alternating order, and the figure reported is the round whose ratio
 * is the median, with the spread of the others beside it. Pure.
 */

/** One round's ratio (Postern / the ceiling) and what it was computed from. */
export interface Round<A> {
  readonly ratio: number
  readonly value: A
}

export interface Summary<A> {
  /** The round with the median ratio (for an even count, the higher of the middle two: the one less kind to Postern). */
  readonly median: Round<A>
  readonly min: number
  readonly max: number
}

/** The median round of those with a finite ratio, or undefined when there is none. */
export const summarize = <A>(rounds: ReadonlyArray<Round<A>>): Summary<A> | undefined => {
  const sorted = rounds.filter((round) => Number.isFinite(round.ratio)).sort((a, b) => a.ratio - b.ratio)
  const median = sorted[Math.floor(sorted.length / 2)]
  const first = sorted[0]
  const last = sorted[sorted.length - 1]
  return median === undefined || first === undefined || last === undefined
    ? undefined
    : { median, min: first.ratio, max: last.ratio }
}

/** Which target round `index` measures first: the ceiling in even rounds, Postern in odd ones. */
export const ceilingFirst = (index: number): boolean => index % 2 === 0
