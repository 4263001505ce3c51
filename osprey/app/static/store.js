// What this browser keeps of the canvas page's session, so that a reload (or a restart of the
// server) loses nothing: the image itself (the file, or an example's name) and the server's
// snapshot of the regions and the chat (osprey/app/saved.py). IndexedDB, in this browser only:
// nothing of it is kept on the server; "Clear all" deletes it.

const DB = "osprey-open", STORE = "kept", KEY = "last";

function open() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function transact(mode, fn) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = fn(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

// { source: { blob, name } | { example }, saved } or null
export async function load() {
  if (typeof indexedDB === "undefined") return null;
  return (await transact("readonly", (s) => s.get(KEY))) || null;
}

export async function save(record) {
  if (typeof indexedDB === "undefined") return;
  await transact("readwrite", (s) => s.put(record, KEY));
}

export async function clear() {
  if (typeof indexedDB === "undefined") return;
  await transact("readwrite", (s) => s.delete(KEY));
}
