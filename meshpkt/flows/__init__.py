"""meshpkt.flows"""
