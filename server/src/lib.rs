//! peach-dyndns-server: the pub's update server (work in progress).
