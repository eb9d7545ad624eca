/**
 * Alternated measuring rounds. A VM's speed drifts by a fifth within minutes, so a ratio of two
 * servers measured one after the other says as much about the drift as about the servers. Each
 * round measures both, in alternating order, and the figure reported is the round whose ratio
 * is the median, with the spread of the others beside it. No I/O of its own: the measurements
 * are the caller's.
 */

/** One round's ratio (Postern / the ceiling) and what it was computed from. */
export interface Round<A> {
  readonly ratio: number
  readonly value: A
}

export interface Summary<A> {
  /** The round with the median ratio (for an even count, of the middle two the one less kind to Postern). */
  readonly median: Round<A>
  /** The range of all the finite ratios, the median's included. */
  readonly min: number
  readonly max: number
  /** How many rounds had a finite ratio. */
  readonly count: number
}

/**
 * Which way a ratio is bad for Postern: "higher" for a cost (CPU per handshake against the
 * responder's), "lower" for a rate (messages per second against smtp-sink's).
 */
export type Worse = "higher" | "lower"

/** The median round of those with a finite ratio, or undefined when there is none. */
export const summarize = <A>(rounds: ReadonlyArray<Round<A>>, worse: Worse): Summary<A> | undefined => {
  const sorted = rounds.filter((round) => Number.isFinite(round.ratio)).sort((a, b) => a.ratio - b.ratio)
  // With an even count the two middle rounds are at length/2 - 1 and length/2.
  const middle = worse === "higher" ? Math.floor(sorted.length / 2) : Math.ceil(sorted.length / 2) - 1
  const median = sorted[middle]
  const first = sorted[0]
  const last = sorted[sorted.length - 1]
  return median === undefined || first === undefined || last === undefined
    ? undefined
    : { median, min: first.ratio, max: last.ratio, count: sorted.length }
}

/** For a human line: how many rounds the median is of, and the range of their ratios; undefined for fewer than two. */
export const spread = <A>(summary: Summary<A> | undefined): string | undefined =>
  summary === undefined || summary.count < 2
    ? undefined
    : `the median of ${summary.count} alternated rounds: ${Math.round(summary.min * 100)}-${Math.round(summary.max * 100)}%`

/** Which target round `index` measures first: the ceiling in even rounds, Postern in odd ones. */
export const ceilingFirst = (index: number): boolean => index % 2 === 0

/** What one round measured of each server. */
export interface Pair<M> {
  readonly ceiling: M
  readonly postern: M
}

/** Every round, the one reported, and their spread. */
export interface Alternated<M> {
  readonly rounds: ReadonlyArray<Round<Pair<M>>>
  /** The median round; the first one when no round has a finite ratio (its figures say why). */
  readonly chosen: Round<Pair<M>>
  readonly summary: Summary<Pair<M>> | undefined
}

/**
 * Runs `count` rounds (at least one) one after the other, each measuring both servers in the
 * order `ceilingFirst` gives, and picks the median round by `ratio`. A round whose ratio is not
 * finite (a server failed) ends the run when `stopAfterFailure` says so: measuring the other
 * server again tells nothing when one is down for good.
 */
export const alternate = async <M>(options: {
  readonly count: number
  readonly ceiling: () => Promise<M>
  readonly postern: () => Promise<M>
  readonly ratio: (pair: Pair<M>) => number
  readonly worse: Worse
  readonly stopAfterFailure?: () => boolean
}): Promise<Alternated<M>> => {
  const runRound = async (index: number): Promise<Round<Pair<M>>> => {
    const first = ceilingFirst(index)
    const measuredFirst = await (first ? options.ceiling : options.postern)()
    const measuredSecond = await (first ? options.postern : options.ceiling)()
    const pair = first
      ? { ceiling: measuredFirst, postern: measuredSecond }
      : { ceiling: measuredSecond, postern: measuredFirst }
    return { ratio: options.ratio(pair), value: pair }
  }
  const firstRound = await runRound(0)
  const rounds = [firstRound]
  for (let index = 1, last = firstRound; index < options.count; index++) {
    if (!Number.isFinite(last.ratio) && options.stopAfterFailure?.() === true) break
    last = await runRound(index)
    rounds.push(last)
  }
  const summary = summarize(rounds, options.worse)
  return { rounds, chosen: summary?.median ?? firstRound, summary }
}

/**
 * What failed in a round, for its entry in a line's `rounds`: a round left out of the median
 * must still say why, and still count as a failure of the run.
 */
export const errors = (
  ceiling: { readonly [key: string]: unknown },
  postern: { readonly [key: string]: unknown }
): { readonly ceilingError?: string; readonly posternError?: string } => ({
  ...(typeof ceiling["error"] === "string" ? { ceilingError: ceiling["error"] } : {}),
  ...(typeof postern["error"] === "string" ? { posternError: postern["error"] } : {})
})
