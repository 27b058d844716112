"""tdm-messaging: typed messages, wire formats and broker transports for the TDM docset packaging protocol."""
