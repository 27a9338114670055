// A bound on creates in flight towards the API server: at most `max` at once, then a short FIFO queue;
// beyond the queue, or after waiting too long in it, an immediate 429 — never a timeout without answer.

import { HttpError } from '../http/errors.ts';

export class Gate {
  #max: number;
  #queueSize: number;
  #timeoutMs: number;
  #active = 0;
  #queue: { start: () => void; timer: NodeJS.Timeout }[] = [];

  constructor(max: number, queueSize: number, timeoutMs: number) {
    this.#max = max;
    this.#queueSize = queueSize;
    this.#timeoutMs = timeoutMs;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#active >= this.#max) await this.#wait();
    else this.#active += 1;
    try {
      return await fn();
    } finally {
      const next = this.#queue.shift();
      if (next) {
        clearTimeout(next.timer);
        next.start(); // the slot passes to the next in line
      } else {
        this.#active -= 1;
      }
    }
  }

  #wait(): Promise<void> {
    if (this.#queue.length >= this.#queueSize) return Promise.reject(busy('the create queue is full'));
    return new Promise((resolve, reject) => {
      const entry = {
        start: resolve,
        timer: setTimeout(() => {
          this.#queue.splice(this.#queue.indexOf(entry), 1);
          reject(busy(`waited ${this.#timeoutMs / 1000}s in the create queue`));
        }, this.#timeoutMs),
      };
      this.#queue.push(entry);
    });
  }
}

const busy = (why: string): HttpError =>
  new HttpError('too_many_requests', `Too many sandbox creates in flight (${why}); retry shortly`, { headers: { 'retry-after': '1' } });
