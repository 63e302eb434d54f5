// netstackd: the swift-netstack daemon. Everything lives in NetstackDaemon.
import NetstackDaemon

await Daemon.main(arguments: CommandLine.arguments)
