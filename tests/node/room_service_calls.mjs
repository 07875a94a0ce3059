// Drives trackyard's RoomService with the real Node server SDK (JSON over Twirp).
//
// usage: node room_service_calls.mjs <url> <room> <identity> <trackSid>
// env:   LIVEKIT_API_KEY, LIVEKIT_API_SECRET
//
// Runs a fixed scenario against a room in which <identity> is connected and has published
// <trackSid>, and prints one JSON object with every result (protobuf-es toJson form,
// camelCase) on stdout. A call that throws is recorded as {error: {...}} so the test sees
// exactly which call failed and how; the script itself always exits 0 after printing.
import { DataPacket_Kind, RoomServiceClient, TrackSource } from 'livekit-server-sdk';

const [url, room, identity, trackSid] = process.argv.slice(2);
const key = process.env.LIVEKIT_API_KEY;
const secret = process.env.LIVEKIT_API_SECRET;
if (!url || !room || !identity || !trackSid || !key || !secret) {
  console.error('usage: LIVEKIT_API_KEY=.. LIVEKIT_API_SECRET=.. node room_service_calls.mjs <url> <room> <identity> <trackSid>');
  process.exit(2);
}

const svc = new RoomServiceClient(url, key, secret, { requestTimeout: 5 });
const out = {};

function describe(err) {
  return { error: { name: err?.name, message: err?.message, status: err?.status ?? null, code: err?.code ?? null } };
}

async function step(name, fn) {
  try {
    out[name] = await fn();
  } catch (err) {
    out[name] = describe(err);
  }
}

const json = (message) => message.toJson();

await step('createRoom', async () =>
  json(await svc.createRoom({ name: room, emptyTimeout: 120, maxParticipants: 7, metadata: 'from-node' })));
await step('createOther', async () => json(await svc.createRoom({ name: `${room}-other` })));
await step('listRooms', async () => (await svc.listRooms()).map(json));
await step('listRoomsByName', async () => (await svc.listRooms([room])).map(json));
await step('listRoomsUnknown', async () => (await svc.listRooms(['no-such-room'])).map(json));
await step('updateRoomMetadata', async () => json(await svc.updateRoomMetadata(room, 'node-meta')));
await step('listParticipants', async () => (await svc.listParticipants(room)).map(json));
await step('getParticipant', async () => json(await svc.getParticipant(room, identity)));
await step('getUnknownParticipant', async () => json(await svc.getParticipant(room, 'nobody')));
await step('updateParticipant', async () =>
  json(await svc.updateParticipant(room, identity, {
    metadata: 'p-meta',
    name: 'Node Name',
    attributes: { k: 'v', gone: '' },
    permission: { canSubscribe: true, canPublish: true, canPublishSources: [TrackSource.MICROPHONE] },
  })));
await step('mutePublishedTrack', async () => json(await svc.mutePublishedTrack(room, identity, trackSid, true)));
await step('sendData', async () => {
  await svc.sendData(room, new TextEncoder().encode('hello from node'), DataPacket_Kind.RELIABLE, {
    topic: 'node-topic',
    destinationIdentities: [identity],
  });
  return 'ok';
});
await step('removeParticipant', async () => {
  await svc.removeParticipant(room, identity);
  return 'ok';
});
await step('listParticipantsAfterRemove', async () => (await svc.listParticipants(room)).map(json));
await step('deleteRoom', async () => {
  await svc.deleteRoom(room);
  return 'ok';
});
await step('listRoomsAfterDelete', async () => (await svc.listRooms()).map(json));
await step('deleteRoomAgain', async () => {
  await svc.deleteRoom(room);
  return 'ok';
});

process.stdout.write(JSON.stringify(out) + '\n');
