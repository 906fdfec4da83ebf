// The customer's device, driven by the agent: camera switching, torch, zoom, full-resolution photos,
// and how much video to send. Every feature is probed first; what the device cannot do is reported,
// never attempted blindly (iOS Safari has no torch or zoom constraints and no ImageCapture).

const PROFILES = {
  high: { scaleResolutionDownBy: 1, maxFramerate: 30, active: true },
  medium: { scaleResolutionDownBy: 2, maxFramerate: 20, maxBitrate: 500_000, active: true },
  low: { scaleResolutionDownBy: 4, maxFramerate: 10, maxBitrate: 150_000, active: true },
  audio_only: { active: false },
};

export async function listCameras() {
  try {
    return (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
  } catch {
    return [];
  }
}

// What the camera can do and is doing, as the camera.state message reports it.
export async function describeCamera(track, error = null) {
  const caps = track?.getCapabilities?.() ?? {};
  const settings = track?.getSettings?.() ?? {};
  const cameras = (await listCameras()).length;
  const facing = Array.isArray(caps.facingMode) ? caps.facingMode.filter((f) => f === "user" || f === "environment") : [];
  return {
    facing,
    current_facing: settings.facingMode === "user" || settings.facingMode === "environment" ? settings.facingMode : null,
    cameras,
    torch: "torch" in caps ? Boolean(settings.torch) : null,
    zoom: caps.zoom ? settings.zoom ?? caps.zoom.min : null,
    zoom_min: caps.zoom ? caps.zoom.min : null,
    zoom_max: caps.zoom ? caps.zoom.max : null,
    error,
  };
}

// Open the other camera: by facing mode where the browser knows it, else the next camera in the list.
export async function switchCamera(current, facing) {
  const settings = current?.getSettings?.() ?? {};
  const base = { width: { ideal: 1280 }, height: { ideal: 720 } };
  if (facing) {
    try {
      return await navigator.mediaDevices.getUserMedia({ video: { ...base, facingMode: { exact: facing } }, audio: false });
    } catch (error) {
      if (error.name !== "OverconstrainedError" && error.name !== "NotFoundError") throw error;
    }
  }
  const cameras = await listCameras();
  if (cameras.length < 2) throw new Error("this device has only one camera");
  const index = cameras.findIndex((c) => c.deviceId === settings.deviceId);
  const next = cameras[(index + 1) % cameras.length];
  return navigator.mediaDevices.getUserMedia({ video: { ...base, deviceId: { exact: next.deviceId } }, audio: false });
}

export async function applyCamera(track, { torch, zoom }) {
  const caps = track.getCapabilities?.() ?? {};
  const advanced = {};
  if (torch !== undefined && torch !== null) {
    if (!("torch" in caps)) throw new Error("this camera has no torch");
    advanced.torch = torch;
  }
  if (zoom !== undefined && zoom !== null) {
    if (!caps.zoom) throw new Error("this camera cannot zoom");
    advanced.zoom = Math.min(caps.zoom.max, Math.max(caps.zoom.min, zoom));
  }
  if (Object.keys(advanced).length) await track.applyConstraints({ advanced: [advanced] });
}

// A full-resolution still: ImageCapture.takePhoto where the browser has it, else the camera's current
// frame at its native size (drawn from a hidden <video>, never from the downscaled preview).
export async function takePhoto(track) {
  if ("ImageCapture" in window) {
    try {
      const blob = await new ImageCapture(track).takePhoto();
      if (blob && blob.size) return blob;
    } catch {
      // fall through to a frame of the stream
    }
  }
  const video = document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  video.srcObject = new MediaStream([track]);
  await video.play();
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  video.srcObject = null;
  return new Promise((resolve, reject) =>
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("no photo"))), "image/jpeg", 0.92));
}

export async function applyProfile(sender, profile) {
  if (!sender) return;
  const parameters = sender.getParameters();
  if (!parameters.encodings?.length) parameters.encodings = [{}];
  const wanted = PROFILES[profile] ?? PROFILES.high;
  for (const encoding of parameters.encodings) {
    delete encoding.maxBitrate;
    Object.assign(encoding, wanted);
  }
  await sender.setParameters(parameters);
}

// What the customer's uplink looks like now, from the camera sender's stats (outbound-rtp plus the
// server's receiver reports, remote-inbound-rtp). Rates are per second since the previous call.
export class UplinkMeter {
  #last = null;

  async measure(sender) {
    if (!sender) return null;
    const report = await sender.getStats();
    let out = null;
    let remote = null;
    report.forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "video" && (!out || (s.frameWidth ?? 0) > (out.frameWidth ?? 0))) out = s;
      if (s.type === "remote-inbound-rtp" && s.kind === "video") remote = s;
    });
    if (!out) return null;
    const now = { at: out.timestamp, bytes: out.bytesSent ?? 0 };
    const bitrate = this.#last ? ((now.bytes - this.#last.bytes) * 8) / (now.at - this.#last.at) : null;
    this.#last = now;
    return {
      width: out.frameWidth ?? null,
      height: out.frameHeight ?? null,
      fps: out.framesPerSecond ?? null,
      bitrate_kbps: bitrate === null || !Number.isFinite(bitrate) ? null : Math.max(0, bitrate),
      packet_loss: remote?.fractionLost ?? null,
      rtt_ms: remote?.roundTripTime !== undefined ? remote.roundTripTime * 1000 : null,
    };
  }
}
