// Reads the .npy arrays inside a NumPy .npz file (a zip archive of stored,
// uncompressed entries, as np.savez writes them) into {name: {shape, data}}.
// Enough for the bundle's golden files; not a general zip reader.
import { readFileSync } from 'node:fs';

const DTYPES = { '<f4': Float32Array, '<f8': Float64Array, '<i8': BigInt64Array, '<i4': Int32Array };

export function parseNpy(buf) {
  if (buf.readUInt32BE(0) !== 0x934e554d) throw new Error('not a .npy array');
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + headerLen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error('fortran-order arrays are not supported');
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').filter((s) => s.trim()).map(Number);
  const Type = DTYPES[descr];
  if (!Type) throw new Error(`dtype ${descr} is not supported`);
  const bytes = buf.subarray(start + headerLen);
  const data = new Type(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  return { shape, data };
}

export function readNpz(path) {
  const zip = readFileSync(path);
  // the central directory lists every entry with its local-header offset
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error(`${path}: not a zip (.npz) file`);
  let entries = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  if (p === 0xffffffff || entries === 0xffff) { // zip64 end of central directory
    const loc = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x06, 0x07]));
    const z64 = Number(zip.readBigUInt64LE(loc + 8));
    entries = Number(zip.readBigUInt64LE(z64 + 32));
    p = Number(zip.readBigUInt64LE(z64 + 48));
  }
  const out = {};
  for (let i = 0; i < entries; i++) {
    if (zip.readUInt32LE(p) !== 0x02014b50) throw new Error(`${path}: bad central directory`);
    const method = zip.readUInt16LE(p + 10);
    let size = zip.readUInt32LE(p + 20);
    const nameLen = zip.readUInt16LE(p + 28);
    const extraLen = zip.readUInt16LE(p + 30);
    const commentLen = zip.readUInt16LE(p + 32);
    let offset = zip.readUInt32LE(p + 42);
    const name = zip.toString('utf8', p + 46, p + 46 + nameLen);
    // zip64 extra field (id 1): the 64-bit values of the fields set to 0xffffffff, in order
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e < extraEnd) {
      const id = zip.readUInt16LE(e);
      const len = zip.readUInt16LE(e + 2);
      if (id === 1) {
        let q = e + 4;
        const uncompressed = zip.readUInt32LE(p + 24);
        if (uncompressed === 0xffffffff) q += 8;
        if (size === 0xffffffff) { size = Number(zip.readBigUInt64LE(q)); q += 8; }
        if (offset === 0xffffffff) { offset = Number(zip.readBigUInt64LE(q)); }
      }
      e += 4 + len;
    }
    if (method !== 0) throw new Error(`${path}: ${name} is compressed (np.savez_compressed); use np.savez`);
    const local = offset + 30 + zip.readUInt16LE(offset + 26) + zip.readUInt16LE(offset + 28);
    out[name.replace(/\.npy$/, '')] = parseNpy(zip.subarray(local, local + size));
    p += 46 + nameLen + extraLen + commentLen;
  }
  return out;
}
