/**
 * A server stream's messages converted one by one, as `for await (const x of source) yield convert(x)` does, but
 * without a generator of its own: a stream parked for hours on a run holds one small object here instead of a
 * suspended async generator (its frame, its queued request and the promise it waits on).
 *
 * The source is opened when the stream is first iterated (`open`, which may throw: the error is the stream's, as in
 * a generator's body), and closed (`return()`) as the generator would close it: when the consumer stops early
 * (`return`, `throw`) and when `convert` throws.
 */
export function mapStream<T, U>(open: () => AsyncIterable<T>, convert: (item: T) => U): AsyncIterable<U> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<U> {
      const iterator = open()[Symbol.asyncIterator]();
      const close = async () => {
        await iterator.return?.();
      };
      return {
        async next() {
          const result = await iterator.next();
          if (result.done) return { done: true, value: undefined };
          let value: U;
          try {
            value = convert(result.value);
          } catch (error) {
            await close();
            throw error;
          }
          return { done: false, value };
        },
        async return() {
          await close();
          return { done: true, value: undefined };
        },
        async throw(error: unknown) {
          await close();
          throw error;
        },
      };
    },
  };
}
