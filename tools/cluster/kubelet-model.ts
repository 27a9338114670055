// The rules a kubelet follows that decide how long a pod takes to become Ready, as pure functions: the
// fake node (fake-node.ts) runs pods by them, and test/unit/kubelet-model.test.ts checks them. Read off
// kubelet v1.37 (pkg/kubelet/prober/worker.go, prober_manager.go; pkg/kubelet/images/image_manager.go).
//
// Probes. Each probe of a container has a worker whose ticker runs every periodSeconds from when the
// kubelet admitted the pod, which has nothing to do with when the container started: relative to the
// container's start its ticks fall at a random phase, start + phase + k·period. A tick is skipped while
// the container has run less than initialDelaySeconds, so the first probe that counts falls between
// initialDelaySeconds and initialDelaySeconds + periodSeconds after the start. On top of its ticks,
// readiness is probed when a status sync sees the container started and not yet ready: at the start
// itself when there is no initial delay and no startup probe, and at the moment a startup probe
// succeeds. A startup probe holds readiness and liveness until it succeeds; failureThreshold failures
// in a row kill the container (and so do liveness failures). A probe passes on an HTTP status from 200
// to 399 within timeoutSeconds.
//
// Images. Pulls are serialized per node (serializeImagePulls, the default): a pull waits for the one
// before it. A present image is not pulled (IfNotPresent, Never); Always pulls, which takes a moment when
// the layers are already there. The Pulled event says both times: "Successfully pulled image "X" in 1.2s
// (3.4s including waiting). Image size: N bytes."

import type { V1Probe } from '@kubernetes/client-node';
import type { Wire } from '../../src/domain/wire.ts';

export type HttpProbe = Wire<V1Probe>;

/** A probe with kubelet's defaults filled in, in milliseconds. */
export type ProbeRule = { initialDelayMs: number; periodMs: number; timeoutMs: number; failureThreshold: number; successThreshold: number };

export function probeRule(probe: HttpProbe): ProbeRule {
  return {
    initialDelayMs: (probe.initialDelaySeconds ?? 0) * 1000,
    periodMs: (probe.periodSeconds ?? 10) * 1000,
    timeoutMs: (probe.timeoutSeconds ?? 1) * 1000,
    failureThreshold: probe.failureThreshold ?? 3,
    successThreshold: probe.successThreshold ?? 1,
  };
}

/**
 * The first tick of a probe worker at or after `after` that counts: ticks at start + phase + k·period
 * (phase in [0, period)), skipped while less than the initial delay has passed since the start.
 */
export function nextTick(rule: ProbeRule, start: number, phase: number, after: number): number {
  const earliest = Math.max(after, start + rule.initialDelayMs);
  const first = start + phase;
  if (earliest <= first) return first;
  return first + Math.ceil((earliest - first) / rule.periodMs) * rule.periodMs;
}

/** Whether readiness is also probed at the container's start (a status sync sees it started, not ready). */
export const probedAtStart = (readiness: ProbeRule, hasStartupProbe: boolean): boolean =>
  !hasStartupProbe && readiness.initialDelayMs === 0;

/** A probe's outcome as kubelet judges an HTTP answer. */
export const probePasses = (status: number | undefined): boolean => status !== undefined && status >= 200 && status < 400;

/** Counts consecutive results the way a prober worker does: flips to `pass` after successThreshold, to fail after failureThreshold. */
export class ProbeState {
  #rule: ProbeRule;
  passing: boolean;
  #successes = 0;
  #failures = 0;

  constructor(rule: ProbeRule, initial: boolean) {
    this.#rule = rule;
    this.passing = initial;
  }

  /** Records one result; true when the state changed. */
  record(ok: boolean): boolean {
    if (ok) {
      this.#failures = 0;
      this.#successes += 1;
    } else {
      this.#successes = 0;
      this.#failures += 1;
    }
    const next = this.passing ? this.#failures < this.#rule.failureThreshold : this.#successes >= this.#rule.successThreshold;
    const changed = next !== this.passing;
    this.passing = next;
    return changed;
  }

  /** Consecutive failures so far (startup and liveness kill the container at failureThreshold). */
  get failures(): number {
    return this.#failures;
  }
}

/** kubelet's crash-loop back-off: 10 s, doubling, at most 5 minutes. */
export const crashBackoffMs = (restarts: number): number => Math.min(300_000, 10_000 * 2 ** Math.max(0, restarts - 1));

/** One node's image puller: serialized pulls, and what each pull's Pulled event says. */
export class PullQueue {
  #freeAt = 0;

  /**
   * A pull asked for at `now` of an image `present` or not when its turn comes: when it starts and
   * ends. A present image (another pod pulled it meanwhile) takes `presentMs`.
   */
  schedule(now: number, pullMs: number, presentMs: number, presentWhenStarted: (at: number) => boolean): { start: number; end: number } {
    const start = Math.max(now, this.#freeAt);
    const end = start + (presentWhenStarted(start) ? Math.min(presentMs, pullMs) : pullMs);
    this.#freeAt = end;
    return { start, end };
  }
}

export const pullingMessage = (image: string): string => `Pulling image "${image}"`;
export const presentMessage = (image: string): string => `Container image "${image}" already present on machine`;
export const pulledMessage = (image: string, pullMs: number, totalMs: number, sizeBytes: number): string =>
  `Successfully pulled image "${image}" in ${goDuration(pullMs)} (${goDuration(totalMs)} including waiting). Image size: ${sizeBytes} bytes.`;

/** A duration in milliseconds as Go's time.Duration prints it after Truncate(time.Millisecond). */
export function goDuration(ms: number): string {
  const whole = Math.max(0, Math.floor(ms));
  if (whole === 0) return '0s';
  if (whole < 1000) return `${whole}ms`;
  const h = Math.floor(whole / 3_600_000);
  const m = Math.floor((whole % 3_600_000) / 60_000);
  const s = (whole % 60_000) / 1000;
  const seconds = `${Number.isInteger(s) ? s : s.toFixed(3).replace(/0+$/, '')}s`;
  if (h > 0) return `${h}h${m}m${seconds}`;
  if (m > 0) return `${m}m${seconds}`;
  return seconds;
}
