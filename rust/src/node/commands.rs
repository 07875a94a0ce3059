//! Commands from Python, applied between receive batches, and the close cascade.
//!
//! Streams: each (track, layer) has at most one media stream and one repair stream; binding
//! another SSRC to the same layer replaces the old one (a publisher that restarted its
//! encoder), and the down-tracks forwarding that layer wait for a keyframe of the new stream.

use trackyard_core::srtp::SrtpContext;

use super::state::{DownTrack, DownTrackSpec, Route, Source, Track, Transport};
use super::{Command, Node};
use crate::udp::MAX_DATAGRAM;

impl Node {
    pub(super) fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::AddTransport { id, ufrag, pwd } => {
                let (now, ssrc) = (self.now_us(), self.random() | 1);
                self.by_ufrag.insert(ufrag.clone(), id);
                self.transports.insert(id, Transport::new(ufrag, pwd, now, ssrc));
            }
            Command::RemoveTransport { id } => self.remove_transport(id),
            Command::InjectFault { id } => {
                if let Some(t) = self.transports.get_mut(&id) {
                    t.fault_injected = true;
                }
            }
            Command::RestartIce { id, ufrag, pwd } => {
                // new local credentials; the bound address, DTLS and SRTP stay until a check
                // with the new credentials arrives from wherever the peer now is
                if let Some(t) = self.transports.get_mut(&id) {
                    self.by_ufrag.remove(&t.ufrag);
                    self.by_ufrag.insert(ufrag.clone(), id);
                    t.ufrag = ufrag;
                    t.pwd = pwd.into_bytes();
                    t.nominated = false;
                }
            }
            Command::SendDtls { id, data } => {
                if let Some(addr) = self.transports.get(&id).and_then(|t| t.addr) {
                    if data.len() <= MAX_DATAGRAM + 64 {
                        crate::stats::Stats::add(&self.stats.tx_bytes, data.len() as u64);
                    }
                    self.send.send_copy(&data, &addr);
                }
            }
            Command::SetSrtp { id, profile, local, remote } => {
                if let Some(t) = self.transports.get_mut(&id) {
                    let (kl, sl) = (profile.key_len(), profile.salt_len());
                    if local.len() == kl + sl && remote.len() == kl + sl {
                        t.tx = SrtpContext::new(profile, &local[..kl], &local[kl..]).ok();
                        t.rx = SrtpContext::new(profile, &remote[..kl], &remote[kl..]).ok();
                    }
                }
            }
            Command::SetExtensions { id, ext } => {
                if let Some(t) = self.transports.get_mut(&id) {
                    t.set_extensions(ext);
                }
            }
            Command::AddTrack { id, clock_rate, kind, codec } => {
                self.tracks.entry(id).or_insert_with(|| Track::new(kind, codec, clock_rate));
            }
            Command::RemoveTrack { id } => self.remove_track(id),
            Command::MuteTrack { id, muted } => {
                if let Some(t) = self.tracks.get_mut(&id) {
                    t.muted = muted;
                    for dt in t.downtracks.iter_mut() {
                        dt.apply_pause(muted);
                    }
                }
            }
            Command::BindStream { track, transport, ssrc, layer, repair } => {
                self.bind_stream(track, transport, ssrc, layer, repair)
            }
            Command::AddDownTrack { id, track, transport, ssrc, payload_type, max_layer, cname } => {
                let seed = self.random();
                let Some(t) = self.tracks.get_mut(&track) else { return };
                let spec = DownTrackSpec { id, transport, ssrc, payload_type, max_layer, cname };
                let mut dt = DownTrack::new(spec, t.kind, t.clock_rate, seed);
                dt.fwd.set_active_layers(t.activity.mask());
                dt.apply_pause(t.muted);
                t.downtracks.push(dt);
                if let Some(old) = self.dt_routes.insert((transport, ssrc), id) {
                    if old != id {
                        self.remove_downtrack(old);
                        self.dt_routes.insert((transport, ssrc), id);
                    }
                }
                self.dt_track.insert(id, track);
            }
            Command::RemoveDownTrack { id } => self.remove_downtrack(id),
            Command::PauseDownTrack { id, paused } => {
                if let Some((t, i)) = self.find_downtrack(id) {
                    let muted = t.muted;
                    let dt = &mut t.downtracks[i];
                    dt.user_paused = paused;
                    dt.apply_pause(muted);
                }
            }
            Command::SetDownTrackLayer { id, max_layer } => {
                if let Some((t, i)) = self.find_downtrack(id) {
                    t.downtracks[i].fwd.set_max_layer(max_layer);
                }
            }
            Command::RequestKeyframe { id } => {
                if let Some((t, i)) = self.find_downtrack(id) {
                    t.downtracks[i].fwd.request_keyframe();
                }
            }
            Command::Shutdown => {}
        }
    }

    /// The track holding a down-track, and its index there.
    pub(super) fn find_downtrack(&mut self, id: u32) -> Option<(&mut Track, usize)> {
        let track = self.dt_track.get(&id)?;
        let t = self.tracks.get_mut(track)?;
        let i = t.downtracks.iter().position(|d| d.id == id)?;
        Some((t, i))
    }

    fn bind_stream(&mut self, track: u32, transport: u32, ssrc: u32, layer: u8, repair: bool) {
        if !self.tracks.contains_key(&track) {
            return;
        }
        if self.streams.get(&(transport, ssrc)) == Some(&Route { track, layer, repair }) {
            return; // already so
        }
        self.unbind(transport, ssrc);
        if repair {
            self.streams.retain(|k, r| !(r.track == track && r.layer == layer && r.repair && k.0 == transport));
        } else {
            let old = self.tracks[&track].sources.iter().find(|s| s.layer == layer).map(|s| (s.transport, s.ssrc));
            if let Some(key) = old {
                self.unbind(key.0, key.1);
            }
            let Some(t) = self.tracks.get_mut(&track) else { return };
            t.sources.push(Source::new(ssrc, transport, layer, t.kind, t.clock_rate));
            if let Some(tr) = self.transports.get_mut(&transport) {
                if tr.twcc_media_ssrc == 0 {
                    tr.twcc_media_ssrc = ssrc;
                }
            }
        }
        self.streams.insert((transport, ssrc), Route { track, layer, repair });
    }

    /// Removes the route of an incoming stream (and its source state).
    fn unbind(&mut self, transport: u32, ssrc: u32) {
        let Some(route) = self.streams.remove(&(transport, ssrc)) else { return };
        if route.repair {
            return;
        }
        if let Some(t) = self.tracks.get_mut(&route.track) {
            t.sources.retain(|s| !(s.transport == transport && s.ssrc == ssrc));
            t.activity.forget(route.layer);
            for dt in t.downtracks.iter_mut() {
                dt.fwd.reset_layer(route.layer);
            }
            t.publish_activity();
        }
    }

    pub(super) fn remove_transport(&mut self, id: u32) {
        let Some(t) = self.transports.remove(&id) else { return };
        self.by_ufrag.remove(&t.ufrag);
        if let Some(addr) = t.addr {
            self.by_addr.remove(&addr);
        }
        let incoming: Vec<(u32, u32)> = self.streams.keys().filter(|k| k.0 == id).copied().collect();
        for (tr, ssrc) in incoming {
            self.unbind(tr, ssrc);
        }
        let gone: Vec<u32> = self.dt_routes.iter().filter(|(k, _)| k.0 == id).map(|(_, d)| *d).collect();
        for d in gone {
            self.remove_downtrack(d);
        }
    }

    fn remove_track(&mut self, id: u32) {
        let Some(track) = self.tracks.remove(&id) else { return };
        self.streams.retain(|_, r| r.track != id);
        for d in track.downtracks {
            self.dt_track.remove(&d.id);
            if self.dt_routes.get(&(d.transport, d.ssrc)) == Some(&d.id) {
                self.dt_routes.remove(&(d.transport, d.ssrc));
            }
        }
    }

    fn remove_downtrack(&mut self, id: u32) {
        let Some(track) = self.dt_track.remove(&id) else { return };
        let Some(t) = self.tracks.get_mut(&track) else { return };
        if let Some(i) = t.downtracks.iter().position(|d| d.id == id) {
            let d = t.downtracks.swap_remove(i);
            if self.dt_routes.get(&(d.transport, d.ssrc)) == Some(&id) {
                self.dt_routes.remove(&(d.transport, d.ssrc));
            }
        }
    }
}
