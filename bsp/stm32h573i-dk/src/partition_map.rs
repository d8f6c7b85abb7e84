//! Where everything lives in the STM32H573IIK3Q's 2 MB of internal flash, and the map of the
//! data partition the stores run on: plain constants and `const fn`s over them, so that they
//! build and are tested on the host (`cargo test -p homemx-bsp-stm32h573i-dk`) as well as checked
//! at compile time for the chip.
//!
//! | range | bank / sectors | size | use |
//! | --- | --- | --- | --- |
//! | `0x0800_0000..0x0814_0000` | bank 1, sectors 0–127, bank 2, sectors 0–31 | 1280 KiB | firmware image (`memory.x` FLASH) |
//! | `0x0814_0000..0x0814_4000` | bank 2, sectors 32–33 | 16 KiB | reserved for the board (boot state); not touched |
//! | `0x0814_4000..0x0820_0000` | bank 2, sectors 34–127 | 752 KiB | the data partition ([`FLASH_MAP`]) |
//!
//! Every sector is 8 KiB (RM0481: two banks of 128 sectors); the chip programs 16-byte
//! quad-words with ECC, each once per erase.
//!
//! The image's room reaches 256 KiB into bank 2 because the image no longer fits bank 1: with
//! inbound TLS it is about 1.1 MB, above the 1 MB budget (`budgets.toml`) that two update slots
//! in 2 MB need. While it is so, there is no room for a second image, and the code that lies in
//! bank 2 stalls while a partition sector is erased or programmed (same bank: the fetch waits,
//! nothing breaks). Once the image is back within 1 MB, [`IMAGE_SIZE`] returns to one bank and
//! the partition grows back (keep `memory.x` in step).
//!
//! The 64 MB Octo-SPI NOR on the kit (MX25LM51245G, 4 KiB sectors) has a driver
//! (`octo_spi_nor`) that nothing uses yet: the spool lives in the internal flash with the key
//! store. [`PLANNED_OCTO_SPI_NOR_MAP`] is the map the spool and key-value store are to take
//! there; the driver's range checks and page splitting are here, so that the host tests them.
//!
//! Owns: nothing (constants). Calls: `homemx_board::FlashMap`'s checks.

use homemx_board::FlashMap;

/// Address of the chip's internal flash (bank 1, sector 0).
pub const FLASH_START_ADDRESS: u32 = 0x0800_0000;
/// Size of one bank (128 sectors).
pub const BANK_SIZE: u32 = 1024 * 1024;
/// Address of bank 2 (its sector 0), with the banks not swapped (option byte `SWAP_BANK` clear).
pub const BANK_2_START_ADDRESS: u32 = FLASH_START_ADDRESS + BANK_SIZE;
/// Erase unit of the internal flash in both banks.
pub const SECTOR_SIZE: u32 = 8 * 1024;
/// Program unit of the internal flash: one 128-bit quad-word (with its ECC).
pub const WORD_SIZE: usize = 16;
/// Sectors kept back for the board between the image and the data partition.
pub const BOARD_RESERVED_SECTORS: u32 = 2;
/// First address of the data partition: after the image's room and the board's sectors.
pub const PARTITION_START_ADDRESS: u32 = FLASH_START_ADDRESS + IMAGE_SIZE + BOARD_RESERVED_SECTORS * SECTOR_SIZE;
/// One past the last address of the data partition: the end of bank 2.
pub const PARTITION_END_ADDRESS: u32 = BANK_2_START_ADDRESS + BANK_SIZE;
/// Size of the data partition in bytes (752 KiB, 94 sectors).
pub const PARTITION_SIZE: u32 = PARTITION_END_ADDRESS - PARTITION_START_ADDRESS;
/// The image's room in `memory.x` (FLASH): bank 1 and the first 32 sectors of bank 2.
pub const IMAGE_SIZE: u32 = BANK_SIZE + 32 * SECTOR_SIZE;

/// The data partition in 8 KiB sectors: two for the key store (its record moves between two
/// slots), 32 for the key-value store (256 KiB, as on the QEMU board), the other 60 for the
/// spool (480 KiB; one sector of it is the spool's spare, so 472 KiB for mail).
pub const FLASH_MAP: FlashMap = FlashMap {
    sector_size: SECTOR_SIZE,
    key_store_sectors: 2,
    key_value_sectors: 32,
    spool_sectors: PARTITION_SIZE / SECTOR_SIZE - 2 - 32,
};

/// Size of the Octo-SPI NOR (MX25LM51245G: 512 Mbit).
pub const OCTO_SPI_NOR_SIZE: u32 = 64 * 1024 * 1024;
/// Erase unit of the Octo-SPI NOR (its 4 KiB sector erase).
pub const OCTO_SPI_NOR_SECTOR_SIZE: u32 = 4 * 1024;

/// Not used yet (the Octo-SPI driver is not wired): the map the stores are to take on the Octo-SPI NOR, with
/// the key store staying in the internal flash. The key store's two sectors here stay unused
/// (the board map's type has no "none"); 256 KiB for the key-value store; the rest, 63.7 MiB,
/// for the spool.
pub const PLANNED_OCTO_SPI_NOR_MAP: FlashMap = FlashMap {
    sector_size: OCTO_SPI_NOR_SECTOR_SIZE,
    key_store_sectors: 2,
    key_value_sectors: 64,
    spool_sectors: OCTO_SPI_NOR_SIZE / OCTO_SPI_NOR_SECTOR_SIZE - 2 - 64,
};

/// Program page of the Octo-SPI NOR: one page program writes at most up to the end of its page.
pub const OCTO_SPI_NOR_PAGE_SIZE: u32 = 256;

/// Why a range of the Octo-SPI NOR was refused before the memory was touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeError {
    /// The address or length is not a multiple of the operation's unit.
    NotAligned,
    /// The range runs past the end of the memory.
    OutOfBounds,
}

/// Checks that `offset..offset + length` lies in the Octo-SPI NOR and both ends are multiples
/// of `alignment`.
pub const fn check_octo_spi_nor_range(offset: u32, length: u32, alignment: u32) -> Result<(), RangeError> {
    if !offset.is_multiple_of(alignment) || !length.is_multiple_of(alignment) {
        return Err(RangeError::NotAligned);
    }
    match offset.checked_add(length) {
        Some(end) if end <= OCTO_SPI_NOR_SIZE => Ok(()),
        _ => Err(RangeError::OutOfBounds),
    }
}

/// How many of `remaining` bytes written from `offset` one page program takes: up to the end of
/// `offset`'s page.
pub const fn octo_spi_nor_page_chunk(offset: u32, remaining: u32) -> u32 {
    let room = OCTO_SPI_NOR_PAGE_SIZE - offset % OCTO_SPI_NOR_PAGE_SIZE;
    if room < remaining {
        room
    } else {
        remaining
    }
}

/// Whether the internal-flash layout holds together: the image and the partition do not
/// overlap, the partition is whole sectors and ends at the end of the chip, and the map fits
/// the partition and passes the stores' checks.
pub const fn internal_layout_is_consistent() -> bool {
    FLASH_START_ADDRESS + IMAGE_SIZE < PARTITION_START_ADDRESS
        && PARTITION_START_ADDRESS >= BANK_2_START_ADDRESS
        && PARTITION_START_ADDRESS.is_multiple_of(SECTOR_SIZE)
        && PARTITION_SIZE.is_multiple_of(SECTOR_SIZE)
        && PARTITION_END_ADDRESS == FLASH_START_ADDRESS + 2 * BANK_SIZE
        && FLASH_MAP.bytes() <= PARTITION_SIZE
        && FLASH_MAP.is_consistent()
}

const _: () = assert!(internal_layout_is_consistent(), "the internal flash map does not hold together");
const _: () = assert!(PLANNED_OCTO_SPI_NOR_MAP.is_consistent() && PLANNED_OCTO_SPI_NOR_MAP.bytes() <= OCTO_SPI_NOR_SIZE);

/// The chip's bank and sector (0–127 within the bank) of a partition offset; `None` past the end.
pub const fn bank_and_sector(partition_offset: u32) -> Option<(u8, u32)> {
    if partition_offset >= PARTITION_SIZE {
        return None;
    }
    let from_flash_start = PARTITION_START_ADDRESS - FLASH_START_ADDRESS + partition_offset;
    Some(((from_flash_start / BANK_SIZE) as u8 + 1, (from_flash_start % BANK_SIZE) / SECTOR_SIZE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_is_bank_2_after_the_image_and_the_reserved_sectors() {
        assert_eq!(FLASH_START_ADDRESS + IMAGE_SIZE, 0x0814_0000);
        assert_eq!(PARTITION_START_ADDRESS, 0x0814_4000);
        assert_eq!(PARTITION_END_ADDRESS, 0x0820_0000);
        assert_eq!(PARTITION_SIZE, 94 * 8192);
        assert_eq!(bank_and_sector(0), Some((2, 34)));
        assert_eq!(bank_and_sector(SECTOR_SIZE - 1), Some((2, 34)));
        assert_eq!(bank_and_sector(SECTOR_SIZE), Some((2, 35)));
        assert_eq!(bank_and_sector(PARTITION_SIZE - 1), Some((2, 127)));
        assert_eq!(bank_and_sector(PARTITION_SIZE), None);
    }

    #[test]
    fn the_internal_map_fills_the_partition_with_8_kib_sectors() {
        assert!(internal_layout_is_consistent());
        assert_eq!(FLASH_MAP.sector_size, 8192);
        assert_eq!(FLASH_MAP.bytes(), PARTITION_SIZE);
        assert_eq!(FLASH_MAP.spool_sectors, 60);
        assert_eq!(u64::from(FLASH_MAP.spool_sectors - 1) * 8192, 472 * 1024, "mail beside the spare sector");
        // A key store of one sector has nowhere to move its record.
        assert!(!FlashMap { key_store_sectors: 1, ..FLASH_MAP }.is_consistent());
    }

    #[test]
    fn the_planned_octo_spi_map_takes_the_whole_nor_in_4_kib_sectors() {
        assert_eq!(PLANNED_OCTO_SPI_NOR_MAP.sector_size, 4096);
        assert_eq!(PLANNED_OCTO_SPI_NOR_MAP.bytes(), OCTO_SPI_NOR_SIZE);
        assert!(PLANNED_OCTO_SPI_NOR_MAP.is_consistent());
        assert_eq!(PLANNED_OCTO_SPI_NOR_MAP.spool_sectors, 16_384 - 66);
    }

    #[test]
    fn octo_spi_nor_ranges_are_checked_before_the_memory_is_touched() {
        assert_eq!(check_octo_spi_nor_range(0, OCTO_SPI_NOR_SIZE, OCTO_SPI_NOR_SECTOR_SIZE), Ok(()));
        assert_eq!(check_octo_spi_nor_range(4096, 4096, 4096), Ok(()));
        assert_eq!(check_octo_spi_nor_range(2048, 4096, 4096), Err(RangeError::NotAligned));
        assert_eq!(check_octo_spi_nor_range(4096, 6, 4), Err(RangeError::NotAligned));
        assert_eq!(check_octo_spi_nor_range(OCTO_SPI_NOR_SIZE - 4, 8, 4), Err(RangeError::OutOfBounds));
        assert_eq!(check_octo_spi_nor_range(u32::MAX - 3, 8, 4), Err(RangeError::OutOfBounds), "no wrap-around");
    }

    #[test]
    fn octo_spi_nor_writes_split_at_page_ends_and_cover_every_byte_once() {
        assert_eq!(octo_spi_nor_page_chunk(0, 1000), 256);
        assert_eq!(octo_spi_nor_page_chunk(252, 8), 4);
        assert_eq!(octo_spi_nor_page_chunk(256, 8), 8);
        for (start, length) in [(0u32, 1u32), (4, 1020), (252, 8), (1000, 5000), (65_532, 4)] {
            let (mut offset, mut remaining, mut chunks) = (start, length, 0);
            while remaining > 0 {
                let chunk = octo_spi_nor_page_chunk(offset, remaining);
                assert!(chunk > 0 && chunk <= OCTO_SPI_NOR_PAGE_SIZE);
                assert_eq!(offset / OCTO_SPI_NOR_PAGE_SIZE, (offset + chunk - 1) / OCTO_SPI_NOR_PAGE_SIZE, "one page per program");
                offset += chunk;
                remaining -= chunk;
                chunks += 1;
            }
            assert_eq!(offset, start + length);
            assert!(chunks <= length.div_ceil(OCTO_SPI_NOR_PAGE_SIZE) + 1);
        }
    }
}
