/**
 * onnxruntime-node sessions for the converted face models (converted on first use, see
 * models/face/convert.ts). One set per thread count per process: sessions are stateless, so every
 * tracker of the process may share them.
 */
import * as ort from 'onnxruntime-node';
import { gateOnnxRuntime } from '../workers/native-gate.ts';
import { convertFaceModels, onnxPath, type FaceModelName } from '../../models/face/convert.ts';

// A worker thread must not be stopped inside an onnxruntime call (see native-gate.ts).
gateOnnxRuntime(ort.InferenceSession);

export interface FaceModels {
  blazeface: ort.InferenceSession;
  facemesh: ort.InferenceSession;
  iris: ort.InferenceSession;
}

export interface FaceModelOptions {
  /** onnxruntime intra-op threads (default 1: one frame loop per core). */
  threads?: number;
}

const cache = new Map<string, Promise<unknown>>();

async function session(name: FaceModelName, threads: number): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(onnxPath(name), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
}

export function loadFaceModels(opts: FaceModelOptions = {}): Promise<FaceModels> {
  const threads = opts.threads ?? 1;
  const key = `face:${threads}`;
  let p = cache.get(key) as Promise<FaceModels> | undefined;
  if (!p) {
    p = (async () => {
      await convertFaceModels({ names: ['blazeface', 'facemesh', 'iris'] });
      const [blazeface, facemesh, iris] = await Promise.all([session('blazeface', threads), session('facemesh', threads), session('iris', threads)]);
      return { blazeface, facemesh, iris };
    })();
    p.catch(() => cache.delete(key));
    cache.set(key, p);
  }
  return p;
}

export function loadFaceResModel(opts: FaceModelOptions = {}): Promise<ort.InferenceSession> {
  const threads = opts.threads ?? 1;
  const key = `faceres:${threads}`;
  let p = cache.get(key) as Promise<ort.InferenceSession> | undefined;
  if (!p) {
    p = (async () => {
      await convertFaceModels({ names: ['faceres'] });
      return session('faceres', threads);
    })();
    p.catch(() => cache.delete(key));
    cache.set(key, p);
  }
  return p;
}

/**
 * Releases every model session this thread loaded; resolves to how many. A worker thread calls it
 * before it ends, so that the models' memory is freed at once. (What aborts the whole process is a
 * thread stopped inside an onnxruntime call, not one holding live sessions: workers/native-gate.ts.)
 */
export async function releaseFaceModels(): Promise<number> {
  const loaded = [...cache.values()];
  cache.clear();
  let released = 0;
  for (const p of loaded) {
    const v = (await p.catch(() => null)) as FaceModels | ort.InferenceSession | null;
    if (!v) continue;
    const sessions: ort.InferenceSession[] = 'release' in v ? [v as ort.InferenceSession] : Object.values(v as FaceModels);
    await Promise.all(sessions.map((s) => s.release()));
    released += sessions.length;
  }
  return released;
}

export { ort };
