"""meshpkt.lab"""
