import Glibc
import NetstackCore
import NetstackWire

/// What opening a TAP for the stack came to: whether offloads were asked
/// for, what the kernel accepted, and why it refused if it did.
public struct TapOffloadReport: Sendable, Hashable, CustomStringConvertible {
    /// Whether the configuration asked for offloads.
    public var requested = false
    /// What the kernel agreed to send us (partial checksums, large segments).
    public var accepted: TapDevice.Offloads = []
    /// The kernel's refusal, when it refused everything and the device was
    /// opened without a virtio header.
    public var refusal: TapError?
    /// What the stack may use.
    public var link = LinkOffloads.none

    public init(requested: Bool = false) {
        self.requested = requested
    }

    public var description: String {
        if !requested { return "off (configured)" }
        if let refusal { return "refused by the kernel (\(refusal)); plain frames" }
        return "virtio header; receive \(accepted); send checksum and TSO"
    }
}

extension TapDevice {
    /// What the stack can take from the kernel, most first: every offload,
    /// then without UDP segmentation (older kernels), then TCP without ECN,
    /// then checksums only.
    public static let offloadPreferences: [Offloads] = [
        [.checksum, .tso4, .tso6, .tsoECN, .uso4, .uso6],
        [.checksum, .tso4, .tso6, .tsoECN],
        [.checksum, .tso4, .tso6],
        [.checksum],
    ]

    /// Opens `name` for the stack. With `offloads`, frames carry a virtio-net
    /// header and the kernel is asked for the most offloads it accepts; if it
    /// accepts none, the device is reopened without the header, and `report`
    /// says why. The stack must be given `report.link`.
    public static func openForStack(name: String, offloads: Bool, multiQueue: Bool = false,
                                    preferences: [Offloads] = offloadPreferences,
                                    report: inout TapOffloadReport) throws(TapError) -> TapDevice {
        report = TapOffloadReport(requested: offloads)
        if offloads {
            var refusal: TapError?
            do {
                let device = try TapDevice(name: name, options: Options(virtioHeader: true, multiQueue: multiQueue))
                try device.setVirtioHeaderSize(VirtioNetHeader.length)
                if let accepted = device.firstAccepted(preferences, refusal: &refusal) {
                    report.accepted = accepted
                    report.link = .virtio
                    return device
                }
                // Closed before the plain device opens (one reader at a time).
                _ = consume device
            } catch {
                // A kernel without IFF_VNET_HDR (or TUNSETVNETHDRSZ): plain frames.
                refusal = error
            }
            report.refusal = refusal
        }
        let device = try openRetryingWhileBusy(name: name, options: Options(virtioHeader: false, multiQueue: multiQueue))
        // Offloads are the interface's, not the descriptor's: a persistent
        // TAP keeps those a previous reader asked for, and the kernel would go
        // on handing over large segments with partial checksums.
        try device.setOffloads([])
        return device
    }

    /// Opens `name`, trying again for up to 200 ms while the kernel says
    /// it is busy: the descriptor just closed may live on a moment in a
    /// child that a fork copied it into (until its exec closes it).
    private static func openRetryingWhileBusy(name: String, options: Options) throws(TapError) -> TapDevice {
        var attempts = 0
        while true {
            do {
                return try TapDevice(name: name, options: options)
            } catch where error.code == EBUSY && attempts < 40 {
                attempts += 1
                usleep(5000)
            }
        }
    }

    /// The first of `preferences` the kernel accepts (set on the device), or
    /// nil with the last refusal.
    private func firstAccepted(_ preferences: [Offloads], refusal: inout TapError?) -> Offloads? {
        for preference in preferences {
            do {
                try setOffloads(preference)
                return preference
            } catch {
                refusal = error
            }
        }
        return nil
    }
}
