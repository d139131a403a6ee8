// Node 20 lacks Promise.withResolvers (ES2024), which aws-local-stepfunctions 3 calls on every Task
// state. Installed once, before that library runs; a runtime that already has it keeps its own.

interface Resolvers<T> {
  promise: Promise<T>;
  resolve: (value: T | PromiseLike<T>) => void;
  reject: (reason?: unknown) => void;
}

type PromiseWithResolvers = PromiseConstructor & { withResolvers?: <T>() => Resolvers<T> };

const PromiseCtor = Promise as PromiseWithResolvers;

if (typeof PromiseCtor.withResolvers !== 'function') {
  Object.defineProperty(PromiseCtor, 'withResolvers', {
    configurable: true,
    writable: true,
    // Non-enumerable like the built-in, so nothing that walks Promise's keys notices the difference.
    enumerable: false,
    value: function withResolvers<T>(this: PromiseConstructor): Resolvers<T> {
      let resolve!: Resolvers<T>['resolve'];
      let reject!: Resolvers<T>['reject'];
      // `this` keeps subclass semantics (`MyPromise.withResolvers()` yields a MyPromise), as the spec does.
      const promise = new this<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    },
  });
}

export {};
