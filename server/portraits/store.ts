/**
 * Portraits: decoded once on upload (sharp), checked for a face, kept in memory as RGBA, under
 * the address of their content. The built-in default portrait is always present under the id
 * "default". With a share (Redis, many nodes) uploads are shared and other nodes' uploads are
 * fetched on first use.
 */
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { XplError } from '../errors.ts';
import type { RgbaImage } from '../media/frame.ts';

export interface FaceBox {
  x: number;
  y: number;
  width: number;
  height: number;
  score: number;
}

export interface Portrait {
  id: string;
  width: number;
  height: number;
  face: FaceBox | null;
  image: RgbaImage;
  createdAt: string;
  /** Only with a share: whether the other nodes have it. */
  shared?: boolean;
}

/** Finds the main face of an image, or null. Injected so the store does not depend on the face models. */
export type FaceFinder = (img: RgbaImage) => Promise<FaceBox | null>;

export const DEFAULT_PORTRAIT_ID = 'default';
const DEFAULT_PORTRAIT_FILE = fileURLToPath(new URL('../../assets/portraits/default.png', import.meta.url));
/** Larger portraits are scaled down: renderers never need more, and memory per portrait stays bounded. */
const MAX_SIDE = 1024;
const MAX_INPUT_PIXELS = 50_000_000;

export async function decodeImage(bytes: Uint8Array): Promise<RgbaImage> {
  let img;
  try {
    img = sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS, failOn: 'error' });
    const meta = await img.metadata();
    if (!meta.format || !['jpeg', 'png', 'webp'].includes(meta.format)) {
      throw new XplError('unsupported_media_type', `unsupported image format ${meta.format ?? 'unknown'}: send JPEG, PNG or WebP`);
    }
  } catch (err) {
    if (err instanceof XplError) throw err;
    const msg = (err as Error).message;
    if (/pixel limit/i.test(msg)) throw new XplError('too_large', `the image has more than ${MAX_INPUT_PIXELS} pixels`);
    throw new XplError('unsupported_media_type', `not a readable image: ${msg}`);
  }
  try {
    const { data, info } = await img
      .rotate()
      .resize({ width: MAX_SIDE, height: MAX_SIDE, fit: 'inside', withoutEnlargement: true })
      .ensureAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  } catch (err) {
    throw new XplError('unsupported_media_type', `the image could not be decoded: ${(err as Error).message}`);
  }
}

/** What a client sees of a portrait (the image itself stays on the server). */
export interface PortraitInfo {
  id: string;
  width: number;
  height: number;
  face: FaceBox | null;
  createdAt: string;
  /** Only with a share (--redis): whether other nodes can use it (false: uploaded while Redis was unreachable). */
  shared?: boolean;
}

/** A listing, and why it may lack the shared part. */
export interface PortraitListing {
  portraits: PortraitInfo[];
  incomplete?: { code: string; message: string };
}

/** Where portraits are shared with other nodes (server/cluster/portraits.ts); absent on a single node. */
export interface PortraitShare {
  put(info: PortraitInfo, bytes: Uint8Array, maxCount: number): Promise<void>;
  fetch(id: string): Promise<{ info: PortraitInfo; bytes: Uint8Array } | null>;
  exists(id: string): Promise<boolean>;
  list(): Promise<PortraitInfo[]>;
  /** True when it was there. */
  remove(id: string): Promise<boolean>;
}

/** A portrait's id is its content's address: the same image uploaded anywhere, any number of times, is one portrait. */
export function contentId(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 32);
}

export class PortraitStore {
  /** In insertion (for shared copies: last use) order, so the oldest shared copy is dropped first when full. */
  private readonly portraits = new Map<string, Portrait>();
  /** Shared portraits being fetched, so concurrent sessions decode one once. */
  private readonly fetching = new Map<string, Promise<Portrait>>();

  constructor(
    private readonly findFace: FaceFinder,
    private readonly maxCount = 64,
    private readonly share?: PortraitShare,
  ) {}

  async loadDefault(): Promise<Portrait> {
    const { readFile } = await import('node:fs/promises');
    const image = await decodeImage(await readFile(DEFAULT_PORTRAIT_FILE));
    const p: Portrait = { id: DEFAULT_PORTRAIT_ID, width: image.width, height: image.height, face: await this.findFace(image), image, createdAt: new Date().toISOString() };
    this.portraits.set(p.id, p);
    return p;
  }

  /**
   * Decodes, checks for a face and keeps an uploaded image; with a share, also shares it. When
   * the share is unreachable the portrait is still kept here, marked `shared: false`.
   */
  async add(bytes: Uint8Array): Promise<Portrait> {
    const id = contentId(bytes);
    let p = this.portraits.get(id);
    if (!p) {
      this.makeRoom();
      const image = await decodeImage(bytes);
      const face = await this.findFace(image);
      if (!face) throw new XplError('no_face', 'no face was found in the image: use a photo with one clearly visible, roughly frontal face');
      p = { id, width: image.width, height: image.height, face, image, createdAt: new Date().toISOString() };
    }
    if (this.share && p.shared !== true) {
      try {
        await this.share.put(describePortrait({ ...p, shared: true }), bytes, this.maxCount);
        p.shared = true;
      } catch (err) {
        if (!(err instanceof XplError && err.code === 'cluster_unavailable')) throw err;
        p.shared = false;
      }
    }
    this.portraits.set(id, p);
    return p;
  }

  /** A portrait by id: from this node, or (with a share) fetched from the other nodes' uploads. */
  async get(id: string): Promise<Portrait> {
    const p = this.portraits.get(id);
    if (!this.share || id === DEFAULT_PORTRAIT_ID || p?.shared === false) {
      if (!p) throw new XplError('not_found', `no portrait ${id}`);
      return p;
    }
    if (p) {
      // Deleted through another node? A share that is away does not stop a portrait this node holds.
      const there = await this.share.exists(id).catch((err: unknown) => (err instanceof XplError && err.code === 'cluster_unavailable' ? true : Promise.reject(err)));
      if (!there) {
        this.portraits.delete(id);
        throw new XplError('not_found', `no portrait ${id}`);
      }
      this.portraits.delete(id);
      this.portraits.set(id, p);
      return p;
    }
    let loading = this.fetching.get(id);
    if (!loading) {
      loading = this.fetchShared(id).finally(() => this.fetching.delete(id));
      this.fetching.set(id, loading);
    }
    return loading;
  }

  private async fetchShared(id: string): Promise<Portrait> {
    const found = await this.share!.fetch(id);
    if (!found) throw new XplError('not_found', `no portrait ${id}`);
    const image = await decodeImage(found.bytes);
    this.makeRoom();
    const p: Portrait = { ...found.info, image, shared: true };
    this.portraits.set(id, p);
    return p;
  }

  /** Every portrait: with a share, those of all nodes (and, when the share is away, this node's, saying so). */
  async list(): Promise<PortraitListing> {
    const local = [...this.portraits.values()].map(describePortrait);
    if (!this.share) return { portraits: local };
    try {
      const shared = await this.share.list();
      const ids = new Set(shared.map((p) => p.id));
      return { portraits: [...local.filter((p) => p.shared !== true && !ids.has(p.id)), ...shared] };
    } catch (err) {
      if (!(err instanceof XplError && err.code === 'cluster_unavailable')) throw err;
      return { portraits: local, incomplete: { code: err.code, message: err.message } };
    }
  }

  async delete(id: string): Promise<void> {
    if (id === DEFAULT_PORTRAIT_ID) throw new XplError('conflict', 'the default portrait cannot be deleted');
    const local = this.portraits.get(id);
    const removed = this.share && local?.shared !== false ? await this.share.remove(id) : false;
    if (!this.portraits.delete(id) && !removed) throw new XplError('not_found', `no portrait ${id}`);
  }

  /** Before keeping one more: at the limit, drops the least recently used shared copy, or refuses. */
  private makeRoom(): void {
    if (this.portraits.size < this.maxCount) return;
    for (const [id, p] of this.portraits) {
      if (p.shared === true) {
        this.portraits.delete(id);
        return;
      }
    }
    throw new XplError('too_many_sessions', `the server holds its limit of ${this.maxCount} portraits: delete one first`, { retryAfter: 1 });
  }
}

export function describePortrait(p: Portrait | PortraitInfo): PortraitInfo {
  return { id: p.id, width: p.width, height: p.height, face: p.face, createdAt: p.createdAt, ...(p.shared !== undefined ? { shared: p.shared } : {}) };
}
